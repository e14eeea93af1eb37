"""Tensor helpers shared by the image nodes: shape checks, resizing, centre cropping.

IMAGE tensors are [batch, height, width, channels] floats in 0..1 (ComfyUI's layout).
Resizing runs in torch (`interpolate`) except lanczos, which torch lacks and Pillow
provides. This module declares no nodes; `registry.discover` imports it and skips it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image as PILImage

from engine.node_api import TensorEstimate

# ComfyUI's MAX_RESOLUTION, the bound of every width/height widget.
MAX_RESOLUTION = 16384

UpscaleMethod = Literal["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
CropMethod = Literal["disabled", "center"]
UPSCALE_TOOLTIP = "Interpolation: nearest-exact keeps hard edges, area suits shrinking, lanczos is sharpest."
CROP_TOOLTIP = "center: crop the source to the target aspect ratio before resizing, instead of stretching."


def require_image(node: str, name: str, image: torch.Tensor) -> None:
    """Raise ValueError unless `image` is a non-empty [B, H, W, C] tensor with 1-4 channels."""
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"{node}: {name} must be an IMAGE tensor, got {type(image).__name__}")
    if image.ndim != 4 or image.shape[-1] not in (1, 2, 3, 4) or 0 in image.shape:
        raise ValueError(
            f"{node}: {name} must be a non-empty [batch, height, width, channels] tensor with 1-4 channels, "
            f"got shape {tuple(image.shape)}"
        )


def require_same_channels(node: str, first: tuple[str, torch.Tensor], second: tuple[str, torch.Tensor]) -> None:
    """Raise ValueError naming both inputs when their channel counts differ."""
    (name_a, a), (name_b, b) = first, second
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"{node}: {name_a} has {a.shape[-1]} channels but {name_b} has {b.shape[-1]}")


def center_crop_to_aspect(image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Crop the middle of `image` to the aspect ratio width:height (ComfyUI's crop="center")."""
    old_height, old_width = image.shape[1], image.shape[2]
    if old_width * height > width * old_height:  # source is wider: trim the sides
        keep = max(1, round(old_height * width / height))
        left = (old_width - keep) // 2
        return image[:, :, left : left + keep, :]
    if old_width * height < width * old_height:  # source is taller: trim top and bottom
        keep = max(1, round(old_width * height / width))
        top = (old_height - keep) // 2
        return image[:, top : top + keep, :, :]
    return image


def _lanczos(image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    # Pillow's "F" mode keeps float precision, so lanczos does not quantise to 8 bits
    # the way a round trip through uint8 images would.
    source = image.detach().to("cpu", torch.float32).numpy()
    out = np.empty((source.shape[0], height, width, source.shape[3]), dtype=np.float32)
    for index in range(source.shape[0]):
        for channel in range(source.shape[3]):
            plane = PILImage.fromarray(np.ascontiguousarray(source[index, :, :, channel]), mode="F")
            out[index, :, :, channel] = np.asarray(plane.resize((width, height), PILImage.Resampling.LANCZOS))
    return torch.from_numpy(out).to(image.device, image.dtype)


def resize_image(
    image: torch.Tensor, width: int, height: int, method: UpscaleMethod, crop: CropMethod = "disabled"
) -> torch.Tensor:
    """Resize a [B, H, W, C] image to width x height; the result is clamped to 0..1."""
    if crop == "center":
        image = center_crop_to_aspect(image, width, height)
    if image.shape[1] == height and image.shape[2] == width:
        return image
    if method == "lanczos":
        return _lanczos(image, width, height).clamp(0.0, 1.0)
    planar = image.movedim(-1, 1)
    if method in ("bilinear", "bicubic"):
        # Antialiasing only matters when shrinking; without it a 4x downscale aliases badly.
        shrinking = height < image.shape[1] or width < image.shape[2]
        resized = F.interpolate(planar, size=(height, width), mode=method, align_corners=False, antialias=shrinking)
    else:
        resized = F.interpolate(planar, size=(height, width), mode=method)
    # Bicubic and antialiased kernels overshoot; IMAGE values must stay in 0..1.
    return resized.movedim(1, -1).clamp(0.0, 1.0)


def image_estimate(batch: int, height: int, width: int, channels: int = 3) -> TensorEstimate:
    """The size of a float32 IMAGE batch, for `estimate=` hooks."""
    return TensorEstimate((batch, height, width, channels))


def is_image_estimate(estimate: TensorEstimate) -> bool:
    """True when an estimate has an IMAGE's rank ([batch, height, width, channels])."""
    return len(estimate.shape) == 4


def keep_aspect_size(image: torch.Tensor | TensorEstimate, width: int, height: int) -> tuple[int, int]:
    """Fill in a zero width or height from the other one and the image's aspect ratio."""
    old_height, old_width = image.shape[1], image.shape[2]
    if width == 0:
        width = max(1, round(old_width * height / old_height))
    if height == 0:
        height = max(1, round(old_height * width / old_width))
    return width, height


def match_batch(node: str, first: tuple[str, torch.Tensor], second: tuple[str, torch.Tensor]) -> None:
    """Raise ValueError unless the two batches are equal or one of them is 1 (broadcast)."""
    (name_a, a), (name_b, b) = first, second
    if a.shape[0] != b.shape[0] and 1 not in (a.shape[0], b.shape[0]):
        raise ValueError(f"{node}: {name_a} has a batch of {a.shape[0]} but {name_b} has {b.shape[0]}")
