"""LATENT values (ComfyUI's `{"samples": tensor, ...}` dicts) checked against the model that reads them.

`require_latent` checks the dict and its samples; `prepare_latent` gives a sampler or editor a
float32 copy in the model's channel count: an all-zero latent of the wrong count (EmptyLatentImage's
4 channels) is widened, since it carries no content (ComfyUI's fix_empty_latent_channels).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from modeling.diffusion_model import DiffusionModel


_LAYOUTS = {4: "[batch, channels, height, width]", 5: "[batch, channels, frames, height, width]"}


def require_latent(node: str, name: str, latent: Any, ndim: int = 4) -> torch.Tensor:
    """Return latent["samples"], or raise ValueError unless it is a non-empty tensor of `ndim` dimensions
    (4: an image latent, 5: a video latent)."""
    if not isinstance(latent, Mapping) or "samples" not in latent:
        raise ValueError(f"{node}: {name} must be a LATENT (a dict with 'samples'), got {type(latent).__name__}")
    samples = latent["samples"]
    if not isinstance(samples, torch.Tensor) or samples.ndim != ndim or 0 in samples.shape:
        shape = tuple(samples.shape) if isinstance(samples, torch.Tensor) else type(samples).__name__
        raise ValueError(f"{node}: {name} must hold a non-empty {_LAYOUTS[ndim]} latent, got {shape}")
    return samples


def prepare_latent(node: str, name: str, latent: Any, model: DiffusionModel) -> dict[str, Any]:
    """A copy of the LATENT whose samples are float32 with the model's channel count and rank (an image model
    takes [B, C, H, W], a video model [B, C, T, H, W])."""
    samples = require_latent(node, name, latent, model.family.latent_ndim)
    if "noise_mask" in latent:
        raise ValueError(f"{node}: {name} carries a noise_mask (inpainting), which the samplers do not support yet")
    channels = model.latent_channels
    if samples.shape[1] != channels:
        if torch.count_nonzero(samples) != 0:
            raise ValueError(
                f"{node}: {name} has {samples.shape[1]} channels but the model works on {channels}-channel latents "
                f"(shape {tuple(samples.shape)}); expected an empty latent or one encoded by this model's VAE"
            )
        samples = torch.zeros(samples.shape[0], channels, *samples.shape[2:])
    prepared = dict(latent)
    prepared["samples"] = samples.to(torch.float32)
    return prepared
