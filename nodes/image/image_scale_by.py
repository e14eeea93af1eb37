"""ImageScaleBy: resize an image by a factor."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import Choice, Float, Image, TensorEstimate, node
from nodes.image._pixels import (
    UPSCALE_TOOLTIP,
    UpscaleMethod,
    image_estimate,
    is_image_estimate,
    require_image,
    resize_image,
)


def _scaled(side: int, scale_by: float) -> int:
    return max(1, round(side * scale_by))


def _estimate(image: TensorEstimate, scale_by: float) -> TensorEstimate | None:
    if not is_image_estimate(image):
        return None
    batch, height, width, channels = image.shape
    return image_estimate(batch, _scaled(height, scale_by), _scaled(width, scale_by), channels)


@node(id="ImageScaleBy", category="image/upscaling", display="Upscale Image By", estimate=_estimate)
def image_scale_by(
    image: Image,
    upscale_method: Annotated[UpscaleMethod, Choice(tooltip=UPSCALE_TOOLTIP)],
    scale_by: Annotated[float, Float(1.0, min=0.01, max=8.0, step=0.01, tooltip="Factor applied to both sides.")],
) -> Image:
    """Resize an image by a factor, rounding each side to whole pixels."""
    require_image("ImageScaleBy", "image", image)
    width, height = _scaled(image.shape[2], scale_by), _scaled(image.shape[1], scale_by)
    return resize_image(image, width, height, upscale_method)
