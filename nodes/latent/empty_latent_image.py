"""EmptyLatentImage: all-zero 4-channel latents, as ComfyUI makes them."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import Int, Latent, TensorEstimate, node
from nodes.image._pixels import MAX_RESOLUTION
from nodes.latent._latents import BATCH_TOOLTIP, HEIGHT_TOOLTIP, WIDTH_TOOLTIP, empty_latent, latent_estimate


def _estimate(width: int, height: int, batch_size: int) -> TensorEstimate:
    return latent_estimate(width, height, batch_size, channels=4)


@node(id="EmptyLatentImage", category="latent", display="Empty Latent Image", estimate=_estimate)
def empty_latent_image(
    width: Annotated[int, Int(512, min=16, max=MAX_RESOLUTION, step=8, tooltip=WIDTH_TOOLTIP)],
    height: Annotated[int, Int(512, min=16, max=MAX_RESOLUTION, step=8, tooltip=HEIGHT_TOOLTIP)],
    batch_size: Annotated[int, Int(1, min=1, max=4096, tooltip=BATCH_TOOLTIP)],
) -> Latent:
    """Create empty 4-channel latents to denoise; samplers widen them to the model's channel count."""
    # Four channels as in ComfyUI, so its workflows behave the same; an all-zero latent carries no
    # content, so the samplers may widen it to a 16-channel model without changing the result.
    return empty_latent(width, height, batch_size, channels=4)
