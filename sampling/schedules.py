"""Sigma schedules by ComfyUI name, computed from a model's `NoiseSchedule` (sampling/contract.py).

Each scheduler takes `(sampling, steps)` and returns, in the schedule's own sigma domain (flow time for
flow models, k-diffusion sigmas for discrete VP models: that is where ComfyUI computes them), a descending float32 tensor that ends in
0.0, normally steps + 1 long. Names, order and maths follow ComfyUI's `SCHEDULER_HANDLERS`
(comfy/samplers.py), so a workflow that says "beta" at 20 steps gets the same sigmas as in
ComfyUI. Two ComfyUI quirks are kept on purpose: "ddim_uniform" and "beta" walk the discrete table
and can return a different number of entries, and "ddim_uniform" does not start at sigma_max.
`compute_sigmas` applies BasicScheduler's denoise rule, which also trims to steps + 1, and returns flow
times, what every sampler integrates over.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType

import torch
from torch import Tensor

from sampling.beta_quantile import beta_ppf
from sampling.contract import NoiseSchedule

Scheduler = Callable[[NoiseSchedule, int], Tensor]

KARRAS_RHO = 7.0  # Karras et al. 2022, eq. 5
BETA_ALPHA = 0.6  # Lee et al., "Beta Sampling is All You Need", arXiv:2407.12173
BETA_BETA = 0.6
LINEAR_QUADRATIC_THRESHOLD = 0.025  # Mochi's linear-quadratic schedule defaults
_NEAR_ZERO = 1e-5  # ComfyUI's test for "the table already reaches zero"


def _require_steps(steps: int) -> None:
    """Reject step counts the table maths would turn into a division by zero or an empty schedule."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")


def _finish(sigmas: list[float] | Tensor, append_zero: bool = True) -> Tensor:
    """float32 sigmas with the final 0.0 appended; float32 is what ComfyUI's SIGMAS carry."""
    values = torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)
    if append_zero:
        values = torch.cat([values, values.new_zeros(1)])
    return values.to(torch.float32)


def simple_sigmas(sampling: NoiseSchedule, steps: int) -> Tensor:
    """Evenly strided entries of the sigma table, walking down from its top entry."""
    _require_steps(steps)
    table = sampling.sigmas_table()
    stride = len(table) / steps
    return _finish([float(table[-(1 + int(i * stride))]) for i in range(steps)])


def normal_sigmas(sampling: NoiseSchedule, steps: int) -> Tensor:
    """Timesteps evenly spaced from sigma_max to sigma_min (both included), then 0."""
    _require_steps(steps)
    return _uniform_timestep_sigmas(sampling, steps, include_sigma_min=True)


def sgm_uniform_sigmas(sampling: NoiseSchedule, steps: int) -> Tensor:
    """SGM's uniform timesteps: steps + 1 points from sigma_max to sigma_min, the last replaced by 0."""
    _require_steps(steps)
    return _uniform_timestep_sigmas(sampling, steps, include_sigma_min=False)


def _uniform_timestep_sigmas(sampling: NoiseSchedule, steps: int, include_sigma_min: bool) -> Tensor:
    start = float(sampling.timestep(sampling.sigma_max))
    end = float(sampling.timestep(sampling.sigma_min))
    append_zero = True
    if include_sigma_min:
        # A table whose bottom is already zero must not get a second zero.
        if math.isclose(sampling.sigma_min, 0.0, abs_tol=_NEAR_ZERO):
            steps += 1
            append_zero = False
        timesteps = torch.linspace(start, end, steps, dtype=torch.float64)
    else:
        timesteps = torch.linspace(start, end, steps + 1, dtype=torch.float64)[:-1]
    return _finish(sampling.sigma_at(timesteps), append_zero)


def ddim_uniform_sigmas(sampling: NoiseSchedule, steps: int) -> Tensor:
    """Every (table size // steps)-th table entry from index 1 upward, as DDIM's uniform skip."""
    _require_steps(steps)
    table = sampling.sigmas_table()
    picked: list[float] = []
    if math.isclose(float(table[1]), 0.0, abs_tol=_NEAR_ZERO):
        steps += 1
    else:
        picked.append(0.0)
    stride = max(len(table) // steps, 1)
    picked.extend(float(table[i]) for i in range(1, len(table), stride))
    return _finish(picked[::-1], append_zero=False)


def karras_sigmas(sampling: NoiseSchedule, steps: int) -> Tensor:
    """Karras et al. 2022 eq. 5: uniform in sigma^(1/rho) between sigma_max and sigma_min."""
    _require_steps(steps)
    ramp = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
    top = sampling.sigma_max ** (1.0 / KARRAS_RHO)
    bottom = sampling.sigma_min ** (1.0 / KARRAS_RHO)
    return _finish((top + ramp * (bottom - top)) ** KARRAS_RHO)


def exponential_sigmas(sampling: NoiseSchedule, steps: int) -> Tensor:
    """Uniform in log sigma between sigma_max and sigma_min."""
    _require_steps(steps)
    logs = torch.linspace(math.log(sampling.sigma_max), math.log(sampling.sigma_min), steps, dtype=torch.float64)
    return _finish(logs.exp())


def beta_sigmas(sampling: NoiseSchedule, steps: int) -> Tensor:
    """Table entries at Beta(0.6, 0.6) quantiles of the time grid (arXiv:2407.12173).

    The U-shaped density spends more steps at both ends of the schedule. Quantiles that round to
    the same table index are taken once, as in ComfyUI, so very long schedules can come out shorter.
    """
    _require_steps(steps)
    table = sampling.sigmas_table()
    last_index = len(table) - 1
    picked: list[float] = []
    previous = -1
    for i in range(steps):
        index = round(beta_ppf(1.0 - i / steps, BETA_ALPHA, BETA_BETA) * last_index)
        if index != previous:
            picked.append(float(table[index]))
        previous = index
    return _finish(picked)


def linear_quadratic_sigmas(sampling: NoiseSchedule, steps: int) -> Tensor:
    """Mochi's schedule: t grows linearly to 0.025 over the first half of the steps, then quadratically to 1.

    Defined on t directly and scaled by sigma_max, so the model's shift does not change it.
    """
    _require_steps(steps)
    if steps == 1:
        return _finish([sampling.sigma_max])
    threshold = LINEAR_QUADRATIC_THRESHOLD
    linear_steps = steps // 2
    quadratic_steps = steps - linear_steps
    ts = [i * threshold / linear_steps for i in range(linear_steps)]
    # The quadratic piece meets the linear one at (linear_steps, threshold) and reaches 1 at steps.
    surplus = linear_steps - threshold * steps
    quadratic = surplus / (linear_steps * quadratic_steps**2)
    linear = threshold / linear_steps - 2 * surplus / quadratic_steps**2
    constant = quadratic * linear_steps**2
    ts += [quadratic * i**2 + linear * i + constant for i in range(linear_steps, steps)]
    ts.append(1.0)
    return _finish([(1.0 - t) * sampling.sigma_max for t in ts], append_zero=False)


def kl_optimal_sigmas(sampling: NoiseSchedule, steps: int) -> Tensor:
    """Uniform in arctan(sigma) from sigma_max to sigma_min (AUTOMATIC1111 PR 15608, "Align Your Steps" KL-optimal).

    ComfyUI divides by steps - 1 and so returns NaN for one step; one step here is [sigma_max, 0].
    """
    _require_steps(steps)
    fraction = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
    angles = fraction * math.atan(sampling.sigma_min) + (1.0 - fraction) * math.atan(sampling.sigma_max)
    return _finish(angles.tan())


SCHEDULERS: Mapping[str, Scheduler] = MappingProxyType(
    {
        "simple": simple_sigmas,
        "sgm_uniform": sgm_uniform_sigmas,
        "karras": karras_sigmas,
        "exponential": exponential_sigmas,
        "ddim_uniform": ddim_uniform_sigmas,
        "beta": beta_sigmas,
        "normal": normal_sigmas,
        "linear_quadratic": linear_quadratic_sigmas,
        "kl_optimal": kl_optimal_sigmas,
    }
)


def scheduler_names() -> list[str]:
    """Scheduler names in ComfyUI's order (the KSampler/BasicScheduler combo)."""
    return list(SCHEDULERS)


def get_scheduler(name: str) -> Scheduler:
    """The scheduler called `name`; a ValueError lists the valid names."""
    try:
        return SCHEDULERS[name]
    except KeyError:
        raise ValueError(f"unknown scheduler {name!r}; valid schedulers: {', '.join(SCHEDULERS)}") from None


def compute_sigmas(sampling: NoiseSchedule, scheduler: str, steps: int, denoise: float = 1.0) -> Tensor:
    """Sigmas for `steps` steps under ComfyUI BasicScheduler's denoise rule.

    denoise < 1 schedules int(steps / denoise) steps and keeps the last steps + 1 sigmas, so a
    partial denoise walks the low-noise tail of the longer schedule; denoise <= 0 gives no sigmas.
    """
    build = get_scheduler(scheduler)
    _require_steps(steps)
    if not math.isfinite(denoise):
        raise ValueError(f"denoise must be a finite number, got {denoise!r}")
    total_steps = steps
    if denoise < 1.0:
        if denoise <= 0.0:
            return torch.zeros(0, dtype=torch.float32)
        total_steps = int(steps / denoise)
    return sampling.to_flow(build(sampling, total_steps)[-(steps + 1) :])
