"""ODE samplers over a sigma schedule, with k-diffusion's contract, and their read-only registry.

A sampler is a pure function `sample_<name>(denoiser, x, sigmas, *, callback, generator)`: the
denoiser returns the x0 prediction for a batch at per-sample sigmas, and the sampler integrates
dx/dsigma = (x - x0) / sigma from sigmas[0] down to sigmas[-1]. For a flow model wrapped by
`sampling.guidance.flow_denoiser` that derivative is exactly the velocity, so the same functions
serve flow and epsilon models. No state outlives a call; progress leaves only through `callback`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

import torch
from torch import Tensor


class Denoiser(Protocol):
    """`denoiser(x [B, ...], sigma [B]) -> x0 prediction [B, ...]` (k-diffusion's model contract)."""

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class StepInfo:
    """What a sampler reports once per step: the state entering step `index` of `total`."""

    index: int
    total: int
    x: Tensor
    sigma: Tensor
    sigma_next: Tensor
    denoised: Tensor


StepCallback = Callable[[StepInfo], None]


class SamplerFunction(Protocol):
    """The shared signature every registered sampler has."""

    def __call__(
        self,
        denoiser: Denoiser,
        x: Tensor,
        sigmas: Tensor,
        *,
        callback: StepCallback | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor: ...


def to_d(x: Tensor, sigma: Tensor, denoised: Tensor) -> Tensor:
    """The ODE derivative dx/dsigma from an x0 prediction; for a flow model this is v = noise - x0."""
    return (x - denoised) / sigma


def _check_sigmas(sigmas: Tensor) -> None:
    if sigmas.ndim != 1:
        raise ValueError(f"sigmas must be a 1-D tensor, got shape {tuple(sigmas.shape)}")


def _batch_sigma(sigma: Tensor, x: Tensor) -> Tensor:
    """The scalar step sigma as the [B] tensor denoisers take."""
    return sigma.expand(x.shape[0])


def sample_euler(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    callback: StepCallback | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Euler's method (Algorithm 2 of Karras et al. 2022 without churn): first order, one call per step.

    `generator` is accepted for the shared signature; this sampler draws no randomness.
    """
    _check_sigmas(sigmas)
    sigmas = sigmas.to(x.device)
    total = len(sigmas) - 1
    for i in range(total):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, _batch_sigma(sigma, x))
        if callback is not None:
            callback(StepInfo(i, total, x, sigma, sigma_next, denoised))
        x = x + to_d(x, sigma, denoised) * (sigma_next - sigma)
    return x


def sample_heun(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    callback: StepCallback | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Heun's second-order method (Algorithm 1 of Karras et al. 2022): two calls per step.

    The step into sigma = 0 is plain Euler, as in k-diffusion: the corrector would evaluate the
    derivative at sigma 0, where (x - x0) / sigma is undefined. `generator` is unused.
    """
    _check_sigmas(sigmas)
    sigmas = sigmas.to(x.device)
    total = len(sigmas) - 1
    for i in range(total):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, _batch_sigma(sigma, x))
        if callback is not None:
            callback(StepInfo(i, total, x, sigma, sigma_next, denoised))
        slope = to_d(x, sigma, denoised)
        step = sigma_next - sigma
        if sigma_next == 0:
            x = x + slope * step
            continue
        # predictor: an Euler step; corrector: average the slopes at both ends (trapezoidal rule)
        x_predicted = x + slope * step
        slope_next = to_d(x_predicted, sigma_next, denoiser(x_predicted, _batch_sigma(sigma_next, x)))
        x = x + (slope + slope_next) * (step / 2)
    return x


SAMPLERS: Mapping[str, SamplerFunction] = MappingProxyType(
    {
        "euler": sample_euler,
        "heun": sample_heun,
    }
)


def sampler_names() -> list[str]:
    """Registered sampler names, in ComfyUI's KSAMPLER_NAMES order."""
    return list(SAMPLERS)


def get_sampler(name: str) -> SamplerFunction:
    """The sampler called `name`; a ValueError lists the valid names."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; valid samplers: {', '.join(SAMPLERS)}") from None
