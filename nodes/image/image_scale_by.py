"""ImageScaleBy: resize an image by a factor."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import Choice, Float, Image, node
from nodes.image._pixels import UPSCALE_TOOLTIP, UpscaleMethod, require_image, resize_image


@node(id="ImageScaleBy", category="image/upscaling", display="Upscale Image By")
def image_scale_by(
    image: Image,
    upscale_method: Annotated[UpscaleMethod, Choice(tooltip=UPSCALE_TOOLTIP)],
    scale_by: Annotated[float, Float(1.0, min=0.01, max=8.0, step=0.01, tooltip="Factor applied to both sides.")],
) -> Image:
    """Resize an image by a factor, rounding each side to whole pixels."""
    require_image("ImageScaleBy", "image", image)
    width = max(1, round(image.shape[2] * scale_by))
    height = max(1, round(image.shape[1] * scale_by))
    return resize_image(image, width, height, upscale_method)
