"""The sampler registry: every sampler by name, what it can do, and the SAMPLER value nodes pass around.

A `ConfiguredSampler` is a sampler name plus its options (FlowTurbo's block counts, ancestral
eta); it has the shared signature, so code that runs it never needs to know which it is.
Names follow ComfyUI's KSAMPLER_NAMES where ComfyUI has the sampler, so workflow files that name
them load; Flowmill's own come after.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from sampling.ancestral import sample_euler_ancestral
from sampling.contract import SamplerFunction, StepCallback, VelocityModel
from sampling.flowturbo import sample_flowturbo
from sampling.solvers import sample_dpmpp_2m, sample_euler, sample_heun, sample_rf_solver


@dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler.

    invertible: deterministic and valid on a rising schedule, so it can run data to noise.
    calls_per_step: large-model calls per step in the common case (for the UI and benchmarks).
    """

    function: SamplerFunction
    invertible: bool
    calls_per_step: float
    summary: str


SAMPLERS: Mapping[str, SamplerSpec] = MappingProxyType(
    {
        "euler": SamplerSpec(sample_euler, True, 1, "first order, 1 call per step"),
        "euler_ancestral": SamplerSpec(
            sample_euler_ancestral, False, 1, "stochastic Euler: fresh noise every step (options: eta, s_noise)"
        ),
        "heun": SamplerSpec(sample_heun, True, 2, "second order, 2 calls per step"),
        "dpmpp_2m": SamplerSpec(sample_dpmpp_2m, False, 1, "second-order multistep, 1 call per step"),
        "rf_solver": SamplerSpec(sample_rf_solver, True, 2, "RF-Solver-2: second order, 2 calls per step"),
        "flowturbo": SamplerSpec(
            sample_flowturbo, True, 1,
            "FlowTurbo: Heun, then 1-call pseudo-corrector, then refiner steps (options: block counts, refiner)",
        ),
    }
)


def sampler_names() -> list[str]:
    """Registered sampler names: ComfyUI's first, in its KSAMPLER_NAMES order, then Flowmill's."""
    return list(SAMPLERS)


def sampler_spec(name: str) -> SamplerSpec:
    """The registered sampler called `name`; a ValueError lists the valid names."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; valid samplers: {', '.join(SAMPLERS)}") from None


@dataclass(frozen=True)
class ConfiguredSampler:
    """A SAMPLER: a registered sampler with its options, callable with the shared signature."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sampler_spec(self.name)  # fail at construction on an unknown name
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    @property
    def spec(self) -> SamplerSpec:
        return sampler_spec(self.name)

    def __call__(
        self,
        model: VelocityModel,
        x: Tensor,
        sigmas: Tensor,
        *,
        callback: StepCallback | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        return self.spec.function(model, x, sigmas, callback=callback, generator=generator, **self.options)


def get_sampler(name: str, **options: Any) -> ConfiguredSampler:
    """The sampler called `name` with `options`; a ValueError lists the valid names."""
    return ConfiguredSampler(name, options)


def inversion_refusal(sampler: ConfiguredSampler) -> str | None:
    """Why `sampler` cannot run from data to noise, or None when it can."""
    if not sampler.spec.invertible:
        usable = ", ".join(name for name, spec in SAMPLERS.items() if spec.invertible)
        return f"sampler {sampler.name!r} cannot invert (it is stochastic or denoise-only); use one of {usable}"
    if sampler.options.get("refiner_steps", 0):
        return "flowturbo's refiner steps are trained for denoising only; invert with refiner_steps 0"
    return None
