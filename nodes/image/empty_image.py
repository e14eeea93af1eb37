"""EmptyImage: a batch of images filled with one colour."""

from __future__ import annotations

from typing import Annotated

import torch

from engine.node_api import Image, Int, TensorEstimate, node
from nodes.image._pixels import MAX_RESOLUTION, image_estimate


def _rgb(color: int) -> tuple[float, float, float]:
    """Split 0xRRGGBB into three floats in 0..1."""
    return ((color >> 16) & 0xFF) / 255.0, ((color >> 8) & 0xFF) / 255.0, (color & 0xFF) / 255.0


def _estimate(width: int, height: int, batch_size: int) -> TensorEstimate:
    return image_estimate(batch_size, height, width)


@node(id="EmptyImage", category="image", display="Empty Image", estimate=_estimate)
def empty_image(
    width: Annotated[int, Int(512, min=1, max=MAX_RESOLUTION, step=1)],
    height: Annotated[int, Int(512, min=1, max=MAX_RESOLUTION, step=1)],
    batch_size: Annotated[int, Int(1, min=1, max=4096)],
    color: Annotated[int, Int(0, min=0, max=0xFFFFFF, step=1, display="color", tooltip="Fill colour as 0xRRGGBB.")],
) -> Image:
    """Create a batch of images filled with a solid colour."""
    fill = torch.tensor(_rgb(color), dtype=torch.float32)
    return fill.expand(batch_size, height, width, 3).clone()
