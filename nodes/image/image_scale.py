"""ImageScale: resize an image to an exact size, optionally keeping its aspect ratio."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import Choice, Image, Int, TensorEstimate, node
from nodes.image._pixels import (
    CROP_TOOLTIP,
    MAX_RESOLUTION,
    UPSCALE_TOOLTIP,
    CropMethod,
    UpscaleMethod,
    image_estimate,
    is_image_estimate,
    keep_aspect_size,
    require_image,
    resize_image,
)

_SIZE_TOOLTIP = "Target size in pixels; 0 derives it from the other side and the aspect ratio."


def _estimate(image: TensorEstimate, width: int, height: int) -> TensorEstimate | None:
    if not is_image_estimate(image) or (width == 0 and height == 0):
        return image if width == 0 and height == 0 else None
    width, height = keep_aspect_size(image, width, height)
    return image_estimate(image.shape[0], height, width, image.shape[3])


@node(id="ImageScale", category="image/upscaling", display="Upscale Image", estimate=_estimate)
def image_scale(
    image: Image,
    upscale_method: Annotated[UpscaleMethod, Choice(tooltip=UPSCALE_TOOLTIP)],
    width: Annotated[int, Int(512, min=0, max=MAX_RESOLUTION, step=1, tooltip=_SIZE_TOOLTIP)],
    height: Annotated[int, Int(512, min=0, max=MAX_RESOLUTION, step=1, tooltip=_SIZE_TOOLTIP)],
    crop: Annotated[CropMethod, Choice(tooltip=CROP_TOOLTIP)],
) -> Image:
    """Resize an image to a given width and height."""
    require_image("ImageScale", "image", image)
    if width == 0 and height == 0:
        return image
    width, height = keep_aspect_size(image, width, height)
    return resize_image(image, width, height, upscale_method, crop)
