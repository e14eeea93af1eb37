"""Model families, checkpoint detection and offline loading, and the wrappers the nodes use.

`families.py` is the typed table of architectures; `detect.py` picks a row from a state dict's
keys; `loading.py` reads safetensors files and diffusers-layout folders into `DiffusionModel`,
`TextEncoder` and `Vae` wrappers. Nothing here downloads anything or unpickles a file. This
package may import `sampling/`, never `engine/`, `nodes/` or `server/`.
"""
