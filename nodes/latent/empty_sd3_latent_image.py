"""EmptySD3LatentImage: all-zero 16-channel latents (the SD3 and FLUX latent width)."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import Int, Latent, TensorEstimate, node
from nodes.image._pixels import MAX_RESOLUTION
from nodes.latent._latents import BATCH_TOOLTIP, HEIGHT_TOOLTIP, WIDTH_TOOLTIP, empty_latent, latent_estimate


def _estimate(width: int, height: int, batch_size: int) -> TensorEstimate:
    return latent_estimate(width, height, batch_size, channels=16)


@node(id="EmptySD3LatentImage", category="latent/sd3", display="EmptySD3LatentImage", estimate=_estimate)
def empty_sd3_latent_image(
    width: Annotated[int, Int(1024, min=16, max=MAX_RESOLUTION, step=16, tooltip=WIDTH_TOOLTIP)],
    height: Annotated[int, Int(1024, min=16, max=MAX_RESOLUTION, step=16, tooltip=HEIGHT_TOOLTIP)],
    batch_size: Annotated[int, Int(1, min=1, max=4096, tooltip=BATCH_TOOLTIP)],
) -> Latent:
    """Create empty 16-channel latents to denoise with SD3- and FLUX-family models."""
    return empty_latent(width, height, batch_size, channels=16)
