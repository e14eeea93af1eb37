"""Discrete variance-preserving models (SD1.5, SDXL: eps or v prediction) under the flow contract.

Flowmill's samplers see a flow model: `x_s = (1 - s) x0 + s noise` with s in [0, 1] and velocity
`noise - x0` (sampling/flow.py). A VP model was trained on `x_t = sqrt(a_t) x0 + sqrt(1 - a_t) noise`
at discrete timesteps t (a_t: the cumulative product of the alphas), predicting the noise (eps) or
`v = sqrt(a_t) noise - sqrt(1 - a_t) x0`. The two are the same family of noisy images up to a scale:

- the k-diffusion sigma `sigma = s / (1 - s)` gives `x_s / (1 - s) = x0 + sigma noise`;
- the VP image at the timestep whose `sqrt((1 - a_t) / a_t)` equals sigma is that divided by
  `sqrt(1 + sigma^2)`, since `sqrt(a_t) = 1 / sqrt(1 + sigma^2)`;
- from the model's output, x0 and the noise follow exactly, and so does the velocity.

Nothing is approximated: the model reads the exact VP image of every flow latent. Its timestep input is
the table entry nearest in log sigma, as ComfyUI's ModelSamplingDiscrete gives it, so a schedule
between table entries ("karras") conditions the model as ComfyUI does; `sigma_at` interpolates in log
sigma for the schedulers, as ComfyUI's does. This is the VP half of the `NoiseSchedule` protocol
(sampling/contract.py); the schedulers work in its k-diffusion sigmas and `to_flow` converts them.
Imports nothing outside torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Prediction = Literal["eps", "v"]


@dataclass(frozen=True, eq=False)
class DiscreteVP:
    """A VP model's noise table (`alphas_cumprod`, one entry per training timestep) and what it predicts."""

    alphas_cumprod: Tensor
    prediction: Prediction = "eps"

    def __post_init__(self) -> None:
        table = torch.as_tensor(self.alphas_cumprod, dtype=torch.float64)
        if table.ndim != 1 or table.numel() < 2 or not bool(((table > 0) & (table < 1)).all()):
            raise ValueError("alphas_cumprod must be a 1-D table of at least 2 values strictly between 0 and 1")
        if not bool((table[1:] < table[:-1]).all()):
            raise ValueError("alphas_cumprod must decrease with the timestep (more noise later)")
        if self.prediction not in ("eps", "v"):
            raise ValueError(f"prediction must be 'eps' or 'v', got {self.prediction!r}")
        object.__setattr__(self, "alphas_cumprod", table)

    @classmethod
    def scaled_linear(cls, prediction: Prediction = "eps", beta_start: float = 0.00085, beta_end: float = 0.012,
                      timesteps: int = 1000) -> DiscreteVP:
        """Stable Diffusion's schedule (SD1.5, SD2, SDXL): betas linear in their square root."""
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, timesteps, dtype=torch.float64) ** 2
        return cls(torch.cumprod(1.0 - betas, dim=0), prediction)

    @property
    def sigmas(self) -> Tensor:
        """The k-diffusion sigma of every timestep, `sqrt((1 - a_t) / a_t)`, increasing; float32 values (as
        ComfyUI's table holds them) in a float64 tensor, so schedules built from them round once."""
        return ((1 - self.alphas_cumprod) / self.alphas_cumprod).sqrt().float().double()

    def sigmas_table(self) -> Tensor:
        return self.sigmas

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    @property
    def flow_sigmas(self) -> Tensor:
        """The same noise levels as flow times `s = sigma / (1 + sigma)`."""
        return self.to_flow(self.sigmas)

    def to_flow(self, sigmas: Tensor) -> Tensor:
        wide = sigmas.double()
        return (wide / (1 + wide)).to(sigmas.dtype)

    def timestep(self, sigma: Tensor | float) -> Tensor:
        """The timestep of the table entry nearest to k-diffusion `sigma` in log sigma (ComfyUI's rule)."""
        log_table = self.sigmas.log()
        log_sigma = torch.as_tensor(sigma, dtype=torch.float64).log()
        return (log_sigma.reshape(-1, 1) - log_table).abs().argmin(dim=1).reshape(log_sigma.shape).double()

    def sigma_at(self, timestep: Tensor) -> Tensor:
        """k-diffusion sigma at (fractional) timesteps, interpolated in log sigma between table entries."""
        log_table = self.sigmas.log()
        t = torch.as_tensor(timestep, dtype=torch.float64).clamp(0, log_table.numel() - 1)
        low = t.floor().long()
        high = t.ceil().long()
        weight = t - low
        return ((1 - weight) * log_table[low] + weight * log_table[high]).exp()

    def model_input(self, x: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        """(the VP image the model reads, its timestep) for flow latent `x` at flow time `s` (< 1).

        `s` is a scalar or one value per batch item.
        """
        s_exact = torch.as_tensor(s, dtype=torch.float64)
        if bool((s_exact >= 1).any()):
            raise ValueError(f"a discrete VP model cannot be called at pure noise (flow time 1); its noisiest "
                             f"level is {float(self.to_flow(self.sigmas[-1:])):.4f}")
        s_item = _per_item(s, x)
        sigma = s_item / (1 - s_item)
        vp = x / (1 - s_item) / (1 + sigma**2).sqrt()
        return vp, self.timestep(s_exact / (1 - s_exact))

    def velocity(self, output: Tensor, x: Tensor, s: Tensor) -> Tensor:
        """The flow velocity `noise - x0` from the model's `output` at flow latent `x`, flow time `s`."""
        s_item = _per_item(s, x)
        sigma = s_item / (1 - s_item)
        scale = 1 / (1 + sigma**2).sqrt()  # sqrt(a_t); sqrt(1 - a_t) is sigma * scale
        x_kd = x / (1 - s_item)
        if self.prediction == "eps":
            noise = output
            x0 = x_kd - sigma * noise
        else:
            vp = x_kd * scale
            x0 = scale * vp - sigma * scale * output
            noise = sigma * scale * vp + scale * output
        return noise - x0


    def noise_latent(self, latent: Tensor, noise: Tensor, s: Tensor | float) -> Tensor:
        """Where a run starts at flow time `s`, as ComfyUI's EPS.noise_scaling has it: the k-diffusion latent
        `latent + sigma noise`, except at full denoise (from the table's noisiest level or above), where the
        noise is scaled by `sqrt(1 + sigma^2)`, a unit-variance VP image; in flow time, divided by `1 + sigma`."""
        flow = float(s)
        if flow >= 1:
            raise ValueError(f"a discrete VP model cannot start at pure noise (flow time 1); its noisiest level is "
                             f"{float(self.to_flow(self.sigmas[-1:])):.4f}")
        sigma = flow / (1 - flow)
        full_denoise = math.isclose(sigma, self.sigma_max, rel_tol=1e-5) or sigma > self.sigma_max
        scale = math.sqrt(1 + sigma**2) if full_denoise else sigma
        return (latent + scale * noise) / (1 + sigma)


def _per_item(s: Tensor | float, x: Tensor) -> Tensor:
    """`s` shaped to broadcast over `x` ([B, ...]): a scalar, or one value per batch item."""
    value = torch.as_tensor(s, dtype=x.dtype, device=x.device)
    if value.ndim == 0:
        return value
    return value.reshape(-1, *([1] * (x.ndim - 1)))
