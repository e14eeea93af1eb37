"""ImageBlend: mix two images with a blend mode and an opacity."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

import torch

from engine.node_api import Choice, Float, Image, TensorEstimate, node
from nodes.image._pixels import (
    is_image_estimate,
    match_batch,
    require_image,
    require_same_channels,
    resize_image,
)

BlendMode = Literal["normal", "multiply", "screen", "overlay", "soft_light", "difference"]


def _soft_light_curve(x: torch.Tensor) -> torch.Tensor:
    # The W3C compositing spec's D(x): a cubic below 1/4, sqrt above, continuous at 1/4.
    return torch.where(x <= 0.25, ((16 * x - 12) * x + 4) * x, torch.sqrt(x))


# Each mode maps (base, layer) to the fully blended result, before opacity is applied.
_MODES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "normal": lambda base, layer: layer,
    "multiply": lambda base, layer: base * layer,
    "screen": lambda base, layer: 1 - (1 - base) * (1 - layer),
    "overlay": lambda base, layer: torch.where(base <= 0.5, 2 * base * layer, 1 - 2 * (1 - base) * (1 - layer)),
    "soft_light": lambda base, layer: torch.where(
        layer <= 0.5,
        base - (1 - 2 * layer) * base * (1 - base),
        base + (2 * layer - 1) * (_soft_light_curve(base) - base),
    ),
    # ComfyUI's definition (signed, clipped at 0 below), not |a - b|, so workflows render alike.
    "difference": lambda base, layer: base - layer,
}


def _estimate(image1: TensorEstimate, image2: TensorEstimate) -> TensorEstimate | None:
    """image1's size, with the larger batch when one of them broadcasts."""
    if not (is_image_estimate(image1) and is_image_estimate(image2)):
        return None
    batch, height, width, channels = image1.shape
    return TensorEstimate((max(batch, image2.shape[0]), height, width, channels))


@node(id="ImageBlend", category="image/postprocessing", display="Image Blend", estimate=_estimate)
def image_blend(
    image1: Image,
    image2: Image,
    blend_factor: Annotated[float, Float(0.5, min=0.0, max=1.0, step=0.01, tooltip="Opacity of image2's blend.")],
    blend_mode: Annotated[BlendMode, Choice(tooltip="difference is image1 - image2, clipped at 0 as in ComfyUI.")],
) -> Image:
    """Blend image2 onto image1; image2 is resized to image1's size when they differ."""
    require_image("ImageBlend", "image1", image1)
    require_image("ImageBlend", "image2", image2)
    require_same_channels("ImageBlend", ("image1", image1), ("image2", image2))
    match_batch("ImageBlend", ("image1", image1), ("image2", image2))
    if image2.shape[1:3] != image1.shape[1:3]:
        image2 = resize_image(image2, image1.shape[2], image1.shape[1], "bicubic", "center")
    image2 = image2.to(image1.device, image1.dtype)
    blended = _MODES[blend_mode](image1, image2)
    return (image1 * (1 - blend_factor) + blended * blend_factor).clamp(0.0, 1.0)
