"""What a sampler sees and what it reports: the velocity model, per-step reports, the sampler signature.

Samplers integrate the flow ODE `dx/dsigma = v(x, sigma)` on a schedule of sigmas. The model is a
plain callable returning that derivative, the velocity `noise - x0` in the FLUX convention (sigma 1
is noise, 0 is data). Velocity rather than k-diffusion's x0 prediction, because the two differ
where it matters: `x0 = x - sigma * v` erases v at sigma 0, and inversion (data to noise) starts
there. The x0 prediction the previews need is recovered as `x - sigma * v` (`denoised_from`).
Imports nothing outside torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor


class VelocityModel(Protocol):
    """`model(x [B, ...], sigma [B]) -> dx/dsigma [B, ...]`; for a flow model, v = noise - x0."""

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor: ...


class NoiseScaling(Protocol):
    """The starting point of a run at flow time `sigma` from `latent` and `noise` (ComfyUI's noise_scaling)."""

    def __call__(self, latent: Tensor, noise: Tensor, sigma: Tensor | float) -> Tensor: ...


class NoiseSchedule(Protocol):
    """A model family's noise levels, and how its outputs become the velocity samplers integrate.

    Two sigma domains meet here. Schedulers (sampling/schedules.py) work in the model's own one, as
    ComfyUI's do, so "karras" means the same noise levels in both: flow time for flow models (0 data,
    1 noise), the k-diffusion sigma for discrete VP models (0 data, about 14.6 at SD's noisiest step).
    `to_flow` maps that domain onto flow time, where every sampler and editor runs; `model_input` and
    `velocity` wrap one model call at flow time `s` so a VP model's prediction becomes `noise - x0`
    exactly. Implemented by `FlowSampling` (sampling/flow.py) and `DiscreteVP` (sampling/discrete_vp.py).
    """

    @property
    def sigma_min(self) -> float: ...

    @property
    def sigma_max(self) -> float: ...

    def sigmas_table(self) -> Tensor:
        """The ascending float64 sigmas of the training timesteps (ComfyUI's `model_sampling.sigmas`)."""
        ...

    def timestep(self, sigma: Tensor | float) -> Tensor | float:
        """The model's timestep for a sigma of the model's domain."""
        ...

    def sigma_at(self, timestep: Tensor) -> Tensor:
        """The sigma (model's domain) at timesteps of `timestep`'s scale; fractional ones interpolate."""
        ...

    def to_flow(self, sigmas: Tensor) -> Tensor:
        """Sigmas of the model's domain as flow times (same dtype); 0 stays 0."""
        ...

    def model_input(self, x: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        """(what the model reads, its time input) for flow latent `x` at flow times `s` ([B] or a scalar)."""
        ...

    def velocity(self, output: Tensor, x: Tensor, s: Tensor) -> Tensor:
        """The flow velocity `noise - x0` from the model's `output` for `model_input(x, s)`."""
        ...

    def noise_latent(self, latent: Tensor, noise: Tensor, sigma: Tensor | float) -> Tensor:
        """Where a run starts at flow time `sigma` (a `NoiseScaling`)."""
        ...


@dataclass(frozen=True)
class StepInfo:
    """What a sampler reports once per step: the state entering step `index` of `total`.

    `denoised` is the step's x0 prediction, `x - sigma * v`, which previews draw.
    """

    index: int
    total: int
    x: Tensor
    sigma: Tensor
    sigma_next: Tensor
    denoised: Tensor


StepCallback = Callable[[StepInfo], None]


class SamplerFunction(Protocol):
    """The signature every registered sampler has; `options` are the sampler's own keywords."""

    def __call__(
        self,
        model: VelocityModel,
        x: Tensor,
        sigmas: Tensor,
        *,
        callback: StepCallback | None = None,
        generator: torch.Generator | None = None,
        **options: Any,
    ) -> Tensor: ...


def denoised_from(x: Tensor, sigma: Tensor, velocity: Tensor) -> Tensor:
    """The x0 prediction `x - sigma * v` (ComfyUI's CONST.calculate_denoised)."""
    return x - sigma * velocity


def checked_sigmas(sigmas: Tensor, x: Tensor) -> Tensor:
    """`sigmas` on x's device, after checking it is one-dimensional."""
    if sigmas.ndim != 1:
        raise ValueError(f"sigmas must be a 1-D tensor, got shape {tuple(sigmas.shape)}")
    return sigmas.to(x.device)


def batch_sigma(sigma: Tensor, x: Tensor) -> Tensor:
    """The scalar step sigma as the [B] tensor models take."""
    return sigma.expand(x.shape[0])


def report(callback: StepCallback | None, index: int, total: int, x: Tensor, sigma: Tensor, sigma_next: Tensor,
           velocity: Tensor) -> None:
    """Send one step's StepInfo to `callback`, if there is one."""
    if callback is not None:
        callback(StepInfo(index, total, x, sigma, sigma_next, denoised_from(x, sigma, velocity)))
