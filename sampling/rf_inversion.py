"""RF-Inversion (Rout et al., ICLR 2025, arXiv 2410.10792): inversion and editing by controlled flow ODEs.

Plain ODE inversion of a real image lands on a noise that is atypical, and regeneration drifts.
RF-Inversion steers both directions with a linear-quadratic-regulator control: each velocity is
blended with the straight path to a fixed endpoint.

Forward (data to noise, sigma rising): with a fixed noise `y1 ~ N(0, I)`,
    u = v(Y, s),  u_cond = (y1 - Y) / (1 - s),  Y <- Y + (u + gamma (u_cond - u)) ds
Reverse (noise to data, sigma falling), with the source latent `y0`: the straight path back to y0
has slope `(X - y0) / sigma`, and
    X <- X + ((1 - eta_i) v(X, sigma) + eta_i (X - y0) / sigma) (sigma_next - sigma)
where `eta_i = eta` on steps `start <= i < stop` (fractions of the schedule) and 0 elsewhere.
With eta = 1 on every step the last step lands exactly on y0; eta = 0 everywhere is plain Euler.

Written in the FLUX convention (velocity dx/dsigma, sigma 1 noise); the paper's reverse process
runs time t = 1 - sigma with velocity -v, which is the same update. Unlike the diffusers
community pipeline, the forward pass feeds the model the schedule's own sigmas, not `i / N`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sampling.contract import StepCallback, VelocityModel, batch_sigma, checked_sigmas, report
from sampling.inversion import inversion_schedule


@dataclass(frozen=True)
class RFInversionSettings:
    """The controller strengths and the window of controlled reverse steps (fractions of the schedule)."""

    gamma: float = 0.5
    eta: float = 0.9
    start: float = 0.0
    stop: float = 0.25

    def __post_init__(self) -> None:
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"RF-Inversion's gamma must be in [0, 1], got {self.gamma}")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"RF-Inversion's eta must be in [0, 1], got {self.eta}")
        if not 0.0 <= self.start <= self.stop <= 1.0:
            raise ValueError(f"RF-Inversion needs 0 <= start <= stop <= 1, got start={self.start}, stop={self.stop}")

    def controlled_steps(self, total: int) -> range:
        """The reverse steps (indices into a `total`-step schedule) that are steered towards the source."""
        return range(int(self.start * total), int(self.stop * total))


def controlled_forward(
    model: VelocityModel,
    source: Tensor,
    sigmas: Tensor,
    *,
    gamma: float,
    endpoint: Tensor,
    callback: StepCallback | None = None,
) -> Tensor:
    """Invert `source` (sigma 0) up to `sigmas[0]` of the falling schedule `sigmas`, steered towards `endpoint`."""
    rising = inversion_schedule(checked_sigmas(sigmas, source))
    endpoint = endpoint.to(source.device, source.dtype)
    total = len(rising) - 1
    y = source
    for i in range(total):
        sigma, sigma_next = rising[i], rising[i + 1]
        velocity = model(y, batch_sigma(sigma, y))
        report(callback, i, total, y, sigma, sigma_next, velocity)
        towards_endpoint = (endpoint - y) / (1 - sigma)
        y = y + (velocity + gamma * (towards_endpoint - velocity)) * (sigma_next - sigma)
    return y


def controlled_reverse(
    model: VelocityModel,
    state: Tensor,
    sigmas: Tensor,
    *,
    source: Tensor,
    eta: float,
    controlled: range,
    callback: StepCallback | None = None,
) -> Tensor:
    """Denoise `state` from `sigmas[0]` to 0, steered towards `source` with strength `eta` on the `controlled` steps."""
    sigmas = checked_sigmas(sigmas, state)
    if float(sigmas[-1]) != 0.0:
        raise ValueError(f"RF-Inversion's schedule must end at sigma 0, got {float(sigmas[-1])}")
    source = source.to(state.device, state.dtype)
    total = len(sigmas) - 1
    x = state
    for i in range(total):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        velocity = model(x, batch_sigma(sigma, x))
        report(callback, i, total, x, sigma, sigma_next, velocity)
        strength = eta if i in controlled else 0.0
        if strength:
            velocity = (1 - strength) * velocity + strength * (x - source) / sigma
        x = x + velocity * (sigma_next - sigma)
    return x


def rf_inversion_edit(
    source_model: VelocityModel,
    target_model: VelocityModel,
    source: Tensor,
    sigmas: Tensor,
    settings: RFInversionSettings,
    *,
    generator: torch.Generator,
    inversion_callback: StepCallback | None = None,
    callback: StepCallback | None = None,
) -> Tensor:
    """Invert `source` with the source prompt, then regenerate it with the target prompt.

    The endpoint noise `y1` is drawn on the CPU from `generator`, so a seed means the same edit
    on every device.
    """
    endpoint = torch.randn(source.shape, generator=generator, dtype=torch.float32)
    state = controlled_forward(source_model, source, sigmas, gamma=settings.gamma, endpoint=endpoint,
                               callback=inversion_callback)
    total = len(sigmas) - 1
    return controlled_reverse(target_model, state, sigmas, source=source, eta=settings.eta,
                              controlled=settings.controlled_steps(total), callback=callback)
