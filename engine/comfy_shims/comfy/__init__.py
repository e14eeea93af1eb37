"""Flowmill's stand-in for ComfyUI's `comfy` package (only the modules packs commonly import).

Loaded from engine/comfy_shims/ by engine/comfy_packs.py; see the README there. Submodules
report to the running node through `engine.context.CURRENT_NODE_CONTEXT` only.
"""
