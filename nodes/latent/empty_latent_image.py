"""EmptyLatentImage: all-zero 4-channel latents, as ComfyUI makes them."""

from __future__ import annotations

from typing import Annotated

import torch

from engine.node_api import Int, Latent, node
from nodes.image._pixels import MAX_RESOLUTION
from nodes.latent._latents import LATENT_SCALE

_WIDTH_TOOLTIP = "The width of the latent images in pixels."
_HEIGHT_TOOLTIP = "The height of the latent images in pixels."


@node(id="EmptyLatentImage", category="latent", display="Empty Latent Image")
def empty_latent_image(
    width: Annotated[int, Int(512, min=16, max=MAX_RESOLUTION, step=8, tooltip=_WIDTH_TOOLTIP)],
    height: Annotated[int, Int(512, min=16, max=MAX_RESOLUTION, step=8, tooltip=_HEIGHT_TOOLTIP)],
    batch_size: Annotated[int, Int(1, min=1, max=4096, tooltip="The number of latent images in the batch.")],
) -> Latent:
    """Create empty 4-channel latents to denoise; samplers widen them to the model's channel count."""
    # Four channels as in ComfyUI, so its workflows behave the same; an all-zero latent carries no
    # content, so the samplers may widen it to a 16-channel model without changing the result.
    return {"samples": torch.zeros(batch_size, 4, height // LATENT_SCALE, width // LATENT_SCALE)}
