"""Socket types and the rule for which output may feed which input.

Wire names equal ComfyUI's (IMAGE, LATENT, MODEL, CLIP, ...), so workflow files and
`/object_info` consumers see the names they expect. Python code annotates sockets with
the aliases defined here (`image: Image`), which carry the wire name in their metadata.

This module owns type names only; it imports no model code and no server code. Which
output may feed which input is engine/wire.py's `types_compatible`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import torch

from engine.wire import ANY

WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})


@dataclass(frozen=True)
class Socket:
    """Marks an annotation as a graph socket with a ComfyUI wire name."""

    name: str


# Python-side aliases. An IMAGE is a float tensor [batch, height, width, channels] in 0..1
# and a MASK a float tensor [batch, height, width], as in ComfyUI.
Image = Annotated[torch.Tensor, Socket("IMAGE")]
Mask = Annotated[torch.Tensor, Socket("MASK")]
Latent = Annotated[dict, Socket("LATENT")]
Conditioning = Annotated[list, Socket("CONDITIONING")]
Model = Annotated[Any, Socket("MODEL")]
TextEncoder = Annotated[Any, Socket("CLIP")]
Vae = Annotated[Any, Socket("VAE")]
ControlNet = Annotated[Any, Socket("CONTROL_NET")]
Sigmas = Annotated[torch.Tensor, Socket("SIGMAS")]
Sampler = Annotated[Any, Socket("SAMPLER")]
Noise = Annotated[Any, Socket("NOISE")]
Guider = Annotated[Any, Socket("GUIDER")]
# FlowTurbo's small velocity-refiner network (Flowmill's own type; ComfyUI has no such socket).
VelocityRefiner = Annotated[Any, Socket("VELOCITY_REFINER")]
AnyValue = Annotated[Any, Socket(ANY)]
