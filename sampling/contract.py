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
