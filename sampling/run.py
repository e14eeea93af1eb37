"""One sampling run: noise the latent to the first sigma, integrate, undo the flow scaling at the end.

This is the part of ComfyUI's KSAMPLER.sample that is maths rather than model management, in flow
time. Nodes call it with a guided velocity model, a registered sampler, a schedule and the model's
noise scaling (`NoiseSchedule.noise_latent`: the flow interpolant, or a VP model's own start).
"""

from __future__ import annotations

import torch
from torch import Tensor

from sampling.contract import NoiseScaling, SamplerFunction, StepCallback, VelocityModel
from sampling.flow import noise_latent


def sample(
    model: VelocityModel,
    sampler: SamplerFunction,
    sigmas: Tensor,
    noise: Tensor,
    latent: Tensor,
    *,
    callback: StepCallback | None = None,
    generator: torch.Generator | None = None,
    noise_scaling: NoiseScaling = noise_latent,
) -> Tensor:
    """Sample from `latent` along `sigmas`; with fewer than two sigmas there is no step and `latent` returns unchanged.

    A run that stops above sigma 0 (the first half of a split schedule) returns
    `x / (1 - sigmas[-1])`, ComfyUI's CONST.inverse_noise_scaling (and, in flow time, a VP model's
    k-diffusion latent `x (1 + sigma)`): a second run that starts there with zero noise re-applies
    `(1 - sigma)` in `noise_latent` and continues from the same x.
    """
    if len(sigmas) <= 1:
        return latent
    x = noise_scaling(latent, noise, sigmas[0])
    x = sampler(model, x, sigmas, callback=callback, generator=generator)
    last = float(sigmas[-1])
    if 0.0 < last < 1.0:
        x = x / (1.0 - last)
    return x
