"""EmptySD3LatentImage: all-zero 16-channel latents (the SD3 and FLUX latent width)."""

from __future__ import annotations

from typing import Annotated

import torch

from engine.node_api import Int, Latent, node
from nodes.image._pixels import MAX_RESOLUTION
from nodes.latent._latents import LATENT_SCALE

_CHANNELS = 16

_WIDTH_TOOLTIP = "The width of the latent images in pixels."
_HEIGHT_TOOLTIP = "The height of the latent images in pixels."


@node(id="EmptySD3LatentImage", category="latent/sd3", display="EmptySD3LatentImage")
def empty_sd3_latent_image(
    width: Annotated[int, Int(1024, min=16, max=MAX_RESOLUTION, step=16, tooltip=_WIDTH_TOOLTIP)],
    height: Annotated[int, Int(1024, min=16, max=MAX_RESOLUTION, step=16, tooltip=_HEIGHT_TOOLTIP)],
    batch_size: Annotated[int, Int(1, min=1, max=4096, tooltip="The number of latent images in the batch.")],
) -> Latent:
    """Create empty 16-channel latents to denoise with SD3- and FLUX-family models."""
    return {"samples": torch.zeros(batch_size, _CHANNELS, height // LATENT_SCALE, width // LATENT_SCALE)}
