"""The diffusion model wrapper: one velocity call for every flow family, plus its noise sampling.

Samplers see only `velocity(x, sigma, context, pooled)`; how a family packs latents, builds
position ids or scales the timestep lives in its architecture module (`family.velocity`).
`with_sampling` gives ModelSamplingFlux / ModelSamplingSD3 a copy that shares the weights.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from modeling.families import ModelFamily
from modeling.latent_preview import LatentPreview
from sampling.flow import FlowSampling


@dataclass(frozen=True, eq=False)
class DiffusionModel:
    """A loaded denoiser with the noise sampling and latent format it was trained with."""

    module: nn.Module
    family: ModelFamily
    sampling: FlowSampling
    latent_channels: int
    device: torch.device
    dtype: torch.dtype
    # The VAE's preview projection when loaded from a checkpoint with one; None for a lone
    # diffusion model (previews then use LatentPreview.generic).
    latent_preview: LatentPreview | None = None

    def with_sampling(self, sampling: FlowSampling) -> DiffusionModel:
        """The same model (shared module) with other noise sampling, e.g. another shift."""
        return replace(self, sampling=sampling)

    def with_latent_preview(self, preview: LatentPreview | None) -> DiffusionModel:
        return replace(self, latent_preview=preview)

    @torch.no_grad()
    def velocity(
        self,
        x: torch.Tensor,
        sigma: torch.Tensor,
        context: torch.Tensor,
        pooled: torch.Tensor,
        *,
        guidance: float | None = None,
    ) -> torch.Tensor:
        """Velocity `noise - x0` [B, C, H, W] for latents x [B, C, H, W] at sigma [B] (or a scalar).

        context [B, L, D] and pooled [B, P] come from the text encoder; a batch of one is shared
        by the whole batch. `guidance` feeds guidance-distilled models and is ignored by the
        others. Runs on the model's device in its dtype; the result has x's device and dtype.
        """
        if x.ndim != 4 or x.shape[1] != self.latent_channels:
            raise ValueError(f"this diffusion model takes {self.latent_channels}-channel latents "
                             f"[B, {self.latent_channels}, H, W], got shape {tuple(x.shape)}")
        batch = x.shape[0]
        sigma = torch.as_tensor(sigma, dtype=torch.float32).reshape(-1)
        if sigma.numel() == 1:
            sigma = sigma.expand(batch)
        context, pooled = _batched(context, batch, "context", 3), _batched(pooled, batch, "pooled", 2)
        if sigma.shape != (batch,):
            raise ValueError(f"sigma must be a scalar or have one value per batch item ({batch}), "
                             f"got shape {tuple(sigma.shape)}")
        if self.family.velocity is None:
            raise TypeError(f"model family {self.family.name!r} has no velocity call; it is not a diffusion model")
        move = {"device": self.device, "dtype": self.dtype}
        result = self.family.velocity(
            self.module, x.to(**move).contiguous(), sigma.to(**move), context.to(**move), pooled.to(**move), guidance
        )
        return result.to(device=x.device, dtype=x.dtype)


def _batched(value: torch.Tensor, batch: int, name: str, ndim: int) -> torch.Tensor:
    if value.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions with the batch first, got shape {tuple(value.shape)}")
    if value.shape[0] == batch:
        return value
    if value.shape[0] == 1:
        return value.expand(batch, *value.shape[1:])
    raise ValueError(f"{name} has batch {value.shape[0]} but the latent has batch {batch}")
