"""ImageInvert: 1 - x on every channel."""

from __future__ import annotations

from engine.node_api import Image, TensorEstimate, node
from nodes.image._pixels import require_image


def _estimate(image: TensorEstimate) -> TensorEstimate:
    return image  # a new tensor of the same size


@node(id="ImageInvert", category="image", display="Invert Image", estimate=_estimate)
def image_invert(image: Image) -> Image:
    """Invert the colours of an image (1 - value on every channel)."""
    require_image("ImageInvert", "image", image)
    return 1.0 - image
