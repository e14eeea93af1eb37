"""Euler ancestral for rectified flows: each step goes below the target sigma, then adds fresh noise back.

The flow form of k-diffusion's ancestral sampler (ComfyUI runs it for CONST models): the noise
that is added is scaled so the state has exactly the flow's marginal, `(1 - s) x0 + s noise`, at
the step's target sigma s. `eta` sets how much of each step is stochastic (0: plain Euler).
"""

from __future__ import annotations

import torch
from torch import Tensor

from sampling.contract import StepCallback, VelocityModel, batch_sigma, checked_sigmas, denoised_from, report


def ancestral_split(sigma: float, sigma_next: float, eta: float) -> tuple[float, float, float]:
    """(sigma_down, scale, renoise) for one step: go deterministically to sigma_down, then
    `x = scale * x + renoise * noise` lands on the flow's marginal at sigma_next.

    sigma_down interpolates between sigma_next (eta 0) and sigma_next^2 / sigma (eta 1).
    """
    sigma_down = sigma_next * (1 + (sigma_next / sigma - 1) * eta)
    keep_data = (1 - sigma_next) / (1 - sigma_down)  # rescales the data part from 1 - sigma_down to 1 - sigma_next
    renoise_variance = sigma_next**2 - (sigma_down * keep_data) ** 2
    return sigma_down, keep_data, max(renoise_variance, 0.0) ** 0.5


def sample_euler_ancestral(
    model: VelocityModel,
    x: Tensor,
    sigmas: Tensor,
    *,
    callback: StepCallback | None = None,
    generator: torch.Generator | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
) -> Tensor:
    """Stochastic Euler steps; one call per step. The noise comes from `generator` (CPU), so a seed
    gives the same image on every device; the last step, into sigma 0, adds none."""
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"euler_ancestral: eta must lie in [0, 1], got {eta!r}")
    if eta > 0 and generator is None:
        raise ValueError("euler_ancestral draws fresh noise each step: pass a seeded torch.Generator")
    sigmas = checked_sigmas(sigmas, x)
    total = len(sigmas) - 1
    for i in range(total):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        if sigma_next >= sigma:
            raise ValueError(f"euler_ancestral only denoises: sigmas must fall, got {float(sigma)} -> "
                             f"{float(sigma_next)} at step {i}")
        velocity = model(x, batch_sigma(sigma, x))
        report(callback, i, total, x, sigma, sigma_next, velocity)
        if sigma_next == 0:
            x = denoised_from(x, sigma, velocity)
            continue
        sigma_down, keep_data, renoise = ancestral_split(float(sigma), float(sigma_next), eta)
        x = x + velocity * (sigma_down - sigma)
        if renoise > 0:
            noise = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device, x.dtype)
            x = keep_data * x + (s_noise * renoise) * noise
    return x
