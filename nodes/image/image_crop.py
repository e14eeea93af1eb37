"""ImageCrop: cut a rectangle out of an image."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import Image, Int, node
from nodes.image._pixels import MAX_RESOLUTION, require_image

_OFFSET_TOOLTIP = "Offset of the crop's top-left corner; clamped so at least one pixel remains."


@node(id="ImageCrop", category="image/transform", display="Image Crop")
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
