"""The diffusion model wrapper: one velocity call for every family, whatever it predicts.

Samplers see only `velocity(x, sigma, condition)` at flow time sigma. The family's noise schedule
(`NoiseSchedule`: flow shift, or discrete VP with eps/v prediction) says what the module reads and
turns its prediction into the velocity `noise - x0`; the family's architecture module packs latents,
builds position ids and reads its own conditioning object (modeling/conditioning.py).
`with_sampling` gives ModelSamplingFlux / ModelSamplingSD3 / ModelSamplingDiscrete a copy that shares
the weights.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from modeling.conditioning import batch_size, moved, tiled
from modeling.families import ModelFamily
from modeling.latent_preview import LatentPreview
from sampling.contract import NoiseSchedule


@dataclass(frozen=True, eq=False)
class DiffusionModel:
    """A loaded denoiser with the noise schedule and latent format it was trained with."""

    module: nn.Module
    family: ModelFamily
    sampling: NoiseSchedule
    latent_channels: int
    device: torch.device
    dtype: torch.dtype
    # The VAE's preview projection when loaded from a checkpoint with one; None for a lone
    # diffusion model (previews then use LatentPreview.generic).
    latent_preview: LatentPreview | None = None

    def with_sampling(self, sampling: NoiseSchedule) -> DiffusionModel:
        """The same model (shared module) with another noise schedule, e.g. another shift."""
        return replace(self, sampling=sampling)

    def with_latent_preview(self, preview: LatentPreview | None) -> DiffusionModel:
        return replace(self, latent_preview=preview)

    @property
    def latent_shape(self) -> str:
        """The latent layout it takes, for messages: [B, C, H, W] or [B, C, T, H, W]."""
        return f"[B, {self.latent_channels}, {'T, ' if self.family.latent_ndim == 5 else ''}H, W]"

    @torch.no_grad()
    def velocity(self, x: torch.Tensor, sigma: torch.Tensor, condition: Any, *,
                 guidance: float | None = None) -> torch.Tensor:
        """Velocity `noise - x0` (x's shape) for latents x at flow time sigma [B] (or a scalar).

        `condition` is the family's conditioning object (`unpack_conditioning`); a batch of one is
        shared by the whole batch. `guidance` feeds guidance-distilled models and is ignored by the
        others. Runs on the model's device in its dtype; the result has x's device and dtype.
        """
        if x.ndim != self.family.latent_ndim or x.shape[1] != self.latent_channels:
            raise ValueError(f"this diffusion model takes {self.latent_channels}-channel latents "
                             f"{self.latent_shape}, got shape {tuple(x.shape)}")
        if self.family.velocity is None:
            raise TypeError(f"model family {self.family.name!r} has no velocity call; it is not a diffusion model")
        batch = x.shape[0]
        sigma = torch.as_tensor(sigma, dtype=torch.float32).reshape(-1)
        if sigma.numel() == 1:
            sigma = sigma.expand(batch)
        if sigma.shape != (batch,):
            raise ValueError(f"sigma must be a scalar or have one value per batch item ({batch}), "
                             f"got shape {tuple(sigma.shape)}")
        condition_batch = batch_size(condition)
        if condition_batch not in (1, batch):
            raise ValueError(f"the conditioning has batch {condition_batch} but the latent has batch {batch}")
        model_x, t = self.sampling.model_input(x, sigma.to(x.device))
        move = {"device": self.device, "dtype": self.dtype}
        # The time input stays float32, as ComfyUI passes it: bfloat16 would round VP timestep 999 to 1000.
        time = t.to(device=self.device, dtype=torch.float32)
        output = self.family.velocity(self.module, model_x.to(**move).contiguous(), time,
                                      moved(tiled(condition, batch), **move), guidance)
        return self.sampling.velocity(output.to(device=x.device, dtype=x.dtype), x, sigma.to(x.device))
