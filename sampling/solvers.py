"""Deterministic ODE solvers for the flow ODE dx/dsigma = v(x, sigma): Euler, Heun, RF-Solver, DPM-Solver++(2M).

Each is a pure function with the shared signature of sampling/contract.py. Schedules may run
either way: descending sigmas denoise, ascending ones (from sigma 0) invert data into noise,
which is what `sampling.inversion` does with the solvers that allow it (not dpmpp_2m, whose
log-sigma steps are undefined at sigma 0). No state outlives a call; progress leaves only
through `callback`; `generator` is accepted for the shared signature and unused.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from sampling.contract import StepCallback, VelocityModel, batch_sigma, checked_sigmas, denoised_from, report


def sample_euler(
    model: VelocityModel,
    x: Tensor,
    sigmas: Tensor,
    *,
    callback: StepCallback | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Euler's method (Algorithm 2 of Karras et al. 2022 without churn): first order, one call per step."""
    sigmas = checked_sigmas(sigmas, x)
    total = len(sigmas) - 1
    for i in range(total):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        velocity = model(x, batch_sigma(sigma, x))
        report(callback, i, total, x, sigma, sigma_next, velocity)
        x = x + velocity * (sigma_next - sigma)
    return x


def sample_heun(
    model: VelocityModel,
    x: Tensor,
    sigmas: Tensor,
    *,
    callback: StepCallback | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Heun's second-order method (Algorithm 1 of Karras et al. 2022): two calls per step.

    The step into sigma 0 is plain Euler, as in k-diffusion and ComfyUI, so a workflow that says
    "heun" gives ComfyUI's image (k-diffusion could not evaluate its derivative at sigma 0).
    """
    sigmas = checked_sigmas(sigmas, x)
    total = len(sigmas) - 1
    for i in range(total):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        velocity = model(x, batch_sigma(sigma, x))
        report(callback, i, total, x, sigma, sigma_next, velocity)
        step = sigma_next - sigma
        if sigma_next == 0:
            x = x + velocity * step
            continue
        # predictor: an Euler step; corrector: average the slopes at both ends (trapezoidal rule)
        velocity_next = model(x + velocity * step, batch_sigma(sigma_next, x))
        x = x + (velocity + velocity_next) * (step / 2)
    return x


Velocity = Callable[[Tensor, Tensor], Tensor]


def rf_solver_step(velocity_at: Velocity, x: Tensor, sigma: Tensor, step: Tensor, velocity: Tensor) -> Tensor:
    """One RF-Solver-2 step (Wang et al. 2024, arXiv 2411.04746), in its Taylor form.

    `velocity` is v(x, sigma). The velocity's time derivative is estimated by a finite difference
    over half the step, then `x + h v + h^2/2 dv/dsigma`. Algebraically this is the explicit
    midpoint rule (`midpoint_step`); the tests check the two agree to rounding.
    """
    half = step / 2
    velocity_mid = velocity_at(x + half * velocity, sigma + half)
    derivative = (velocity_mid - velocity) / half
    return x + step * velocity + 0.5 * step**2 * derivative


def midpoint_step(velocity_at: Velocity, x: Tensor, sigma: Tensor, step: Tensor, velocity: Tensor) -> Tensor:
    """The explicit midpoint rule (RK2): `x + h v(x + h/2 v, sigma + h/2)`."""
    half = step / 2
    return x + step * velocity_at(x + half * velocity, sigma + half)


def sample_rf_solver(
    model: VelocityModel,
    x: Tensor,
    sigmas: Tensor,
    *,
    callback: StepCallback | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """RF-Solver-2: second order, two calls per step, never evaluating the model at the step's end.

    As in the reference implementation (wangjiangshan0725/RF-Solver-Edit, `denoise`), the same
    update runs forward in sigma for inversion.
    """
    sigmas = checked_sigmas(sigmas, x)
    total = len(sigmas) - 1

    def velocity_at(point: Tensor, sigma: Tensor) -> Tensor:
        return model(point, batch_sigma(sigma, point))

    for i in range(total):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        velocity = velocity_at(x, sigma)
        report(callback, i, total, x, sigma, sigma_next, velocity)
        x = rf_solver_step(velocity_at, x, sigma, sigma_next - sigma, velocity)
    return x


def sample_dpmpp_2m(
    model: VelocityModel,
    x: Tensor,
    sigmas: Tensor,
    *,
    callback: StepCallback | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, arXiv 2211.01095), in k-diffusion's form as ComfyUI runs it.

    A multistep method: one call per step, second order from the second step on by reusing the
    previous x0 prediction. Time is t = -log(sigma), the exponential integrator's variable for
    dx/dsigma = (x - x0) / sigma, which is exactly the flow ODE; the step into sigma 0 returns
    the x0 prediction. Denoising only: sigma 0 has no log, so it cannot start an inversion.
    """
    sigmas = checked_sigmas(sigmas, x)
    total = len(sigmas) - 1
    previous_denoised: Tensor | None = None
    for i in range(total):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        if sigma_next > sigma or sigma <= 0:
            raise ValueError(f"dpmpp_2m only denoises: sigmas must fall and stay above 0 until the last, "
                             f"got {float(sigma)} -> {float(sigma_next)} at step {i}")
        velocity = model(x, batch_sigma(sigma, x))
        report(callback, i, total, x, sigma, sigma_next, velocity)
        denoised = denoised_from(x, sigma, velocity)
        if sigma_next == 0:
            x = denoised
        else:
            h = sigma.log() - sigma_next.log()
            target = denoised
            if previous_denoised is not None:
                ratio = (sigmas[i - 1].log() - sigma.log()) / h  # last step size over this one
                target = (1 + 1 / (2 * ratio)) * denoised - (1 / (2 * ratio)) * previous_denoised
            x = (sigma_next / sigma) * x - torch.expm1(-h) * target
        previous_denoised = denoised
    return x
