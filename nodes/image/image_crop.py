"""ImageCrop: cut a rectangle out of an image."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import Image, Int, TensorEstimate, node
from nodes.image._pixels import MAX_RESOLUTION, is_image_estimate, require_image

_OFFSET_TOOLTIP = "Offset of the crop's top-left corner; clamped so at least one pixel remains."


def _estimate(image: TensorEstimate, width: int, height: int, x: int, y: int) -> TensorEstimate | None:
    if not is_image_estimate(image):
        return None
    batch, old_height, old_width, channels = image.shape
    left, top = min(x, old_width - 1), min(y, old_height - 1)
    return TensorEstimate((batch, min(height, old_height - top), min(width, old_width - left), channels))


@node(id="ImageCrop", category="image/transform", display="Image Crop", estimate=_estimate)
def image_crop(
    image: Image,
    width: Annotated[int, Int(512, min=1, max=MAX_RESOLUTION, step=1)],
    height: Annotated[int, Int(512, min=1, max=MAX_RESOLUTION, step=1)],
    x: Annotated[int, Int(0, min=0, max=MAX_RESOLUTION, step=1, tooltip=_OFFSET_TOOLTIP)],
    y: Annotated[int, Int(0, min=0, max=MAX_RESOLUTION, step=1, tooltip=_OFFSET_TOOLTIP)],
) -> Image:
    """Crop a width x height rectangle at (x, y); it is cut short at the image border."""
    require_image("ImageCrop", "image", image)
    # ComfyUI clamps the corner into the image rather than failing, so old workflows still run.
    left = min(x, image.shape[2] - 1)
    top = min(y, image.shape[1] - 1)
    return image[:, top : top + height, left : left + width, :]
