"""ImageBatch: concatenate two image batches."""

from __future__ import annotations

import torch

from engine.node_api import Image, TensorEstimate, node
from nodes.image._pixels import is_image_estimate, require_image, require_same_channels, resize_image


def _estimate(image1: TensorEstimate, image2: TensorEstimate) -> TensorEstimate | None:
    if not (is_image_estimate(image1) and is_image_estimate(image2)):
        return None
    batch, height, width, channels = image1.shape
    return TensorEstimate((batch + image2.shape[0], height, width, channels))


@node(id="ImageBatch", category="image", display="Batch Images", estimate=_estimate)
def image_batch(image1: Image, image2: Image) -> Image:
    """Join two image batches; image2 is resized (centre-cropped) to image1's size if needed."""
    require_image("ImageBatch", "image1", image1)
    require_image("ImageBatch", "image2", image2)
    require_same_channels("ImageBatch", ("image1", image1), ("image2", image2))
    if image2.shape[1:3] != image1.shape[1:3]:
        image2 = resize_image(image2, image1.shape[2], image1.shape[1], "bilinear", "center")
    return torch.cat([image1, image2.to(image1.device, image1.dtype)], dim=0)
