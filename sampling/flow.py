"""A flow model's noise levels: the timestep shift, the discrete sigma table and noise scaling.

Conventions (FLUX, SD3): sigma = t in [0, 1], pure noise at 1, data at 0, and
`x_sigma = (1 - sigma) * x0 + sigma * noise`. `FlowSampling` plays the part of ComfyUI's
ModelSamplingDiscreteFlow / ModelSamplingFlux: the schedulers in `sampling/schedules.py` read
its table and its `sigma_min` / `sigma_max`, so a schedule name means the same sigmas here as
in ComfyUI. It is the flow half of the `NoiseSchedule` protocol (sampling/contract.py). Imports nothing
outside torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

# ComfyUI's ModelSamplingFlux keeps a 10x finer table than the SD3 flow sampling; the "simple",
# "ddim_uniform" and "beta" schedules index this table, so the size is part of a schedule's meaning.
FLUX_TABLE_SIZE = 10000
# Latent pixels per transformer token for FLUX: 8x VAE downscale times 2x2 patch packing.
FLUX_PIXELS_PER_TOKEN = 16 * 16


def time_snr_shift(alpha: float, t: Tensor | float) -> Tensor | float:
    """Shift t towards noise by `alpha`: `alpha * t / (1 + (alpha - 1) * t)`.

    alpha > 1 keeps more of the schedule at high noise, which large images need because their
    pixels are more correlated (SD3 paper, section 5.3.2). Endpoints stay fixed: 0 -> 0, 1 -> 1.
    """
    return alpha * t / (1 + (alpha - 1) * t)


def flux_mu(
    image_tokens: float,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
    base_tokens: int = 256,
    max_tokens: int = 4096,
) -> float:
    """FLUX's log-shift: linear in the image token count through (base_tokens, base_shift), (max_tokens, max_shift).

    Same line as ComfyUI's ModelSamplingFlux node; the shift used by `time_snr_shift` is `exp(mu)`.
    """
    slope = (max_shift - base_shift) / (max_tokens - base_tokens)
    intercept = base_shift - slope * base_tokens
    return image_tokens * slope + intercept


@dataclass(frozen=True)
class FlowSampling:
    """How a flow model maps its training time grid to sigmas.

    shift: the `alpha` of `time_snr_shift` (SD3 uses 3.0, FLUX `exp(flux_mu(...))`).
    multiplier: model timestep per unit sigma (diffusers and ComfyUI feed `sigma * 1000`).
    timesteps: size of the discrete table schedules index (1000 for SD3, 10000 for FLUX, as ComfyUI).
    """

    shift: float = 1.0
    multiplier: float = 1000.0
    timesteps: int = 1000

    def __post_init__(self) -> None:
        # A non-positive shift makes sigma leave [0, 1] or divide by zero; fail at construction.
        if not (math.isfinite(self.shift) and self.shift > 0):
            raise ValueError(f"FlowSampling.shift must be a finite number > 0, got {self.shift!r}")
        if not (math.isfinite(self.multiplier) and self.multiplier > 0):
            raise ValueError(f"FlowSampling.multiplier must be a finite number > 0, got {self.multiplier!r}")
        if isinstance(self.timesteps, bool) or not isinstance(self.timesteps, int) or self.timesteps < 2:
            raise ValueError(f"FlowSampling.timesteps must be an int >= 2, got {self.timesteps!r}")

    @classmethod
    def sd3(cls, shift: float = 3.0) -> FlowSampling:
        """SD3-style fixed shift (ComfyUI ModelSamplingSD3)."""
        return cls(shift=shift)

    @classmethod
    def flux(cls, width: int, height: int, base_shift: float = 0.5, max_shift: float = 1.15) -> FlowSampling:
        """FLUX's resolution-dependent shift for an image of `width` x `height` pixels (ComfyUI ModelSamplingFlux)."""
        tokens = width * height / FLUX_PIXELS_PER_TOKEN
        mu = flux_mu(tokens, base_shift=base_shift, max_shift=max_shift)
        return cls(shift=math.exp(mu), timesteps=FLUX_TABLE_SIZE)

    def sigma(self, t: Tensor | float) -> Tensor | float:
        """Sigma at training time t in [0, 1]."""
        return time_snr_shift(self.shift, t)

    def sigmas_table(self, n: int | None = None) -> Tensor:
        """Ascending float64 sigmas `sigma(i / n)` for i = 1..n (ComfyUI's `model_sampling.sigmas`).

        float64 so that schedules built from the table round to float32 once, at the end.
        `n` defaults to `self.timesteps`.
        """
        size = self.timesteps if n is None else n
        grid = torch.arange(1, size + 1, dtype=torch.float64) / size
        return self.sigma(grid)

    @property
    def sigma_max(self) -> float:
        """The noisiest table entry, sigma(1) = 1.0 for every shift."""
        return float(self.sigma(1.0))

    @property
    def sigma_min(self) -> float:
        """The cleanest table entry, sigma(1 / timesteps); karras/exponential/kl_optimal end here."""
        return float(self.sigma(1.0 / self.timesteps))

    def timestep(self, sigma: Tensor | float) -> Tensor | float:
        """The model's timestep input for a sigma."""
        return sigma * self.multiplier

    def sigma_at(self, timestep: Tensor) -> Tensor:
        """The sigma at a timestep (`timestep / multiplier` through the shift): the inverse of `timestep`."""
        return self.sigma(timestep / self.multiplier)

    def to_flow(self, sigmas: Tensor) -> Tensor:
        """A flow model's sigmas are flow times already."""
        return sigmas

    def model_input(self, x: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        """A flow model reads the latent as it is, at its sigma; the family scales it to its timestep."""
        return x, s

    def velocity(self, output: Tensor, x: Tensor, s: Tensor) -> Tensor:
        """A flow model predicts the velocity itself."""
        return output

    def noise_latent(self, latent: Tensor, noise: Tensor, sigma: Tensor | float) -> Tensor:
        """The flow interpolant (`noise_latent` below)."""
        return noise_latent(latent, noise, sigma)


def sigma_view(sigma: Tensor | float, like: Tensor) -> Tensor | float:
    """Shape `sigma` to broadcast against `like` ([B, ...]): a per-sample [B] becomes [B, 1, ...].

    A Python float or single-element tensor stays a scalar, so a one-sigma call never needs a
    batch dimension.
    """
    if not isinstance(sigma, Tensor):
        return sigma
    if sigma.numel() == 1:
        return sigma.reshape(())
    if sigma.ndim != 1 or sigma.shape[0] != like.shape[0]:
        raise ValueError(
            f"sigma must be a scalar or a [{like.shape[0]}] tensor (one per sample), got {tuple(sigma.shape)}"
        )
    return sigma.reshape((-1,) + (1,) * (like.ndim - 1))


def noise_latent(latent: Tensor, noise: Tensor, sigma: Tensor | float) -> Tensor:
    """The flow interpolant at `sigma`: `sigma * noise + (1 - sigma) * latent` (ComfyUI CONST.noise_scaling).

    With an all-zero latent this is txt2img's scaled noise; with an encoded image it is img2img's
    starting point for a partial-denoise schedule.
    """
    scale = sigma_view(sigma, latent)
    return scale * noise + (1 - scale) * latent
