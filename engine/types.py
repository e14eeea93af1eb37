"""Socket types and the rule for which output may feed which input.

Wire names equal ComfyUI's (IMAGE, LATENT, MODEL, CLIP, ...), so workflow files and
`/object_info` consumers see the names they expect. Python code annotates sockets with
the aliases defined here (`image: Image`), which carry the wire name in their metadata.

This module owns type names only; it imports no model code and no server code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import torch

ANY = "*"
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})


@dataclass(frozen=True)
class Socket:
    """Marks an annotation as a graph socket with a ComfyUI wire name."""

    name: str


def types_compatible(received: str, expected: str) -> bool:
    """True when an output of type `received` may feed an input of type `expected`.

    `*` matches anything, and comma-separated unions (`IMAGE,MASK`) match when the two
    sides share at least one member, as in ComfyUI's `validate_node_input`.
    """
    if received == expected or received == ANY or expected == ANY:
        return True
    received_set = {part.strip() for part in received.split(",")}
    expected_set = {part.strip() for part in expected.split(",")}
    return ANY in received_set or ANY in expected_set or bool(received_set & expected_set)


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
AnyValue = Annotated[Any, Socket(ANY)]
