"""Checks and resizing shared by the latent nodes.

A LATENT is ComfyUI's dict: "samples" is a float tensor [batch, channels, height, width] at
1/8 of the pixel size, plus optional keys ("batch_index", "noise_mask", ...) that nodes pass
along untouched. This module declares no nodes.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F

from engine.node_api import TensorEstimate
from modeling.model_refs import ModelRef, require_reference
from nodes.image._pixels import center_crop_to_aspect

# Pixels per latent cell: the 8x downsampling of every VAE loaded so far (and ComfyUI's //8).
LATENT_SCALE = 8

WIDTH_TOOLTIP = "The width of the latent images in pixels."
HEIGHT_TOOLTIP = "The height of the latent images in pixels."
BATCH_TOOLTIP = "The number of latent images in the batch."


# The widest latent of the model families Flowmill loads (SD3, FLUX: 16 channels). A sampler
# or VAE widens latents to its model's channels, which are unknown before it runs.
WIDEST_LATENT_CHANNELS = 16


def latent_estimate(width: int, height: int, batch_size: int, channels: int) -> TensorEstimate:
    """The size of `empty_latent(width, height, batch_size, channels)`, without making it."""
    return TensorEstimate((batch_size, channels, height // LATENT_SCALE, width // LATENT_SCALE))


def sampled_estimate(latent: TensorEstimate) -> TensorEstimate | None:
    """A sampler's output latent: the input's size, widened to the widest model's channels."""
    if len(latent.shape) != 4:
        return None
    batch, channels, height, width = latent.shape
    return TensorEstimate((batch, max(channels, WIDEST_LATENT_CHANNELS), height, width))


def empty_latent(width: int, height: int, batch_size: int, channels: int) -> dict[str, torch.Tensor]:
    """An all-zero LATENT for images of width x height pixels."""
    return {"samples": torch.zeros(batch_size, channels, height // LATENT_SCALE, width // LATENT_SCALE)}


LatentUpscaleMethod = Literal["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]


def require_vae(node: str, vae: Any) -> ModelRef:
    """`vae` when it is a VAE reference from a loader node, else a ValueError naming the node."""
    return require_reference(node, "vae", vae, "vae")


def _slerp(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of channel vectors (dim 1) with linearly interpolated lengths."""
    length_a, length_b = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
    unit_a = a / length_a.clamp_min(1e-8)
    unit_b = b / length_b.clamp_min(1e-8)
    angle = (unit_a * unit_b).sum(dim=1, keepdim=True).clamp(-1.0, 1.0).acos()
    sine = angle.sin()
    # Nearly parallel vectors: sin(angle) ~ 0, where plain lerp of the directions is exact enough.
    parallel = sine.abs() < 1e-4
    safe = torch.where(parallel, torch.ones_like(sine), sine)
    spherical = (torch.sin((1 - weight) * angle) * unit_a + torch.sin(weight * angle) * unit_b) / safe
    direction = torch.where(parallel, (1 - weight) * unit_a + weight * unit_b, spherical)
    return direction * ((1 - weight) * length_a + weight * length_b)


def _bislerp(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Bilinear resampling in which each lerp is a slerp of the channel vectors.

    Latent channels encode direction more than magnitude, so slerp keeps their norm where
    linear blending of two different latents shrinks it and washes the image out.
    """
    def grid(size_out: int, size_in: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Pixel-centre alignment, as F.interpolate(align_corners=False).
        centres = (torch.arange(size_out, dtype=torch.float32) + 0.5) * size_in / size_out - 0.5
        position = centres.clamp(0, size_in - 1)
        low = position.floor().long()
        return low, (low + 1).clamp(max=size_in - 1), (position - low).to(samples.device)

    rows_low, rows_high, row_weight = grid(height, samples.shape[2])
    cols_low, cols_high, col_weight = grid(width, samples.shape[3])
    col_weight = col_weight.view(1, 1, 1, -1)
    top = _slerp(samples[:, :, rows_low][..., cols_low], samples[:, :, rows_low][..., cols_high], col_weight)
    bottom = _slerp(samples[:, :, rows_high][..., cols_low], samples[:, :, rows_high][..., cols_high], col_weight)
    return _slerp(top, bottom, row_weight.view(1, 1, -1, 1))


def resize_latent(
    samples: torch.Tensor, width: int, height: int, method: LatentUpscaleMethod, crop: str
) -> torch.Tensor:
    """Resize [B, C, H, W] latents to width x height cells, centre-cropping first if asked."""
    if crop == "center":
        samples = center_crop_to_aspect(samples.movedim(1, -1), width, height).movedim(-1, 1)
    if samples.shape[2] == height and samples.shape[3] == width:
        return samples
    if method == "bislerp":
        return _bislerp(samples.float(), width, height).to(samples.dtype)
    if method in ("bilinear", "bicubic"):
        return F.interpolate(samples, size=(height, width), mode=method, align_corners=False)
    return F.interpolate(samples, size=(height, width), mode=method)
