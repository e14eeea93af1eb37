"""FlowEdit (Kulikov et al., ICCV 2025, arXiv 2412.08629): inversion-free editing by velocity differences.

No inversion and no noise map: the edit starts at the source latent and moves along the
difference between the target-prompt and source-prompt velocities, each evaluated on a fresh
noising of the source. At step i (schedule sigma_0 > ... > sigma_T = 0):

    z_src = (1 - sigma_i) x_src + sigma_i eps          eps fresh per step (and per average)
    z_tar = z_src + (z_edit - x_src)
    z_edit += (sigma_{i+1} - sigma_i) * mean_k [V_tar(z_tar) - V_src(z_src)]

Steps with T - i > n_max are skipped (the edit starts part-way, as SDEdit's strength does); the
last n_min steps are plain sampling with the target prompt from `z_edit` re-noised by the same
construction, an SDEdit-style tail. With n_min = 0 the result is `z_edit`. Identical source and
target velocities give a zero difference at every step, so the source comes back unchanged.

Written once for any flow model: the two velocities come as `EditVelocities`, which the node
adapters batch into one model call. The reference code's `n_min > 0` branch for SD3 reads an
undefined variable; this implementation follows the paper and the FLUX branch instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

import torch
from torch import Tensor

from sampling.contract import StepCallback, VelocityModel, batch_sigma, checked_sigmas, report


class BothVelocities(Protocol):
    """`both(z_src, z_tar, sigma [B]) -> (V_src(z_src), V_tar(z_tar))` in one batched model call."""

    def __call__(self, z_source: Tensor, z_target: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]: ...


@dataclass(frozen=True)
class EditVelocities:
    """The source-prompt and target-prompt velocity models; `both`, when given, evaluates the two at once."""

    source: VelocityModel
    target: VelocityModel
    both: BothVelocities | None = None

    def pair(self, z_source: Tensor, z_target: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        if self.both is not None:
            return self.both(z_source, z_target, sigma)
        return self.source(z_source, sigma), self.target(z_target, sigma)


def check_window(steps: int, n_max: int, n_min: int, n_avg: int) -> None:
    """Raise ValueError unless 0 <= n_min <= n_max <= steps and n_avg >= 1."""
    if steps < 1:
        raise ValueError(f"FlowEdit needs at least 1 step, got {steps}")
    if not 0 <= n_min <= n_max <= steps:
        raise ValueError(f"FlowEdit needs 0 <= n_min <= n_max <= steps, got n_min={n_min}, n_max={n_max}, "
                         f"steps={steps}")
    if n_avg < 1:
        raise ValueError(f"FlowEdit's n_avg must be at least 1, got {n_avg}")


@dataclass(frozen=True)
class FlowEditSettings:
    """FlowEdit's knobs: schedule length, the window of edited steps, averaging, guidance and the seed."""

    steps: int
    n_max: int
    n_min: int
    n_avg: int
    source_cfg: float
    target_cfg: float
    seed: int

    def __post_init__(self) -> None:
        check_window(self.steps, self.n_max, self.n_min, self.n_avg)


# The reference's defaults (SD3_exp.yaml, FLUX_exp.yaml) and the demo model's, measured by
# benchmarks/editing.py. FLUX-dev is guidance-distilled: its scales are the guidance embedding.
FLOWEDIT_DEFAULTS: Mapping[str, FlowEditSettings] = MappingProxyType({
    "sd3": FlowEditSettings(steps=50, n_max=33, n_min=0, n_avg=1, source_cfg=3.5, target_cfg=13.5, seed=42),
    "flux": FlowEditSettings(steps=28, n_max=24, n_min=0, n_avg=1, source_cfg=1.5, target_cfg=5.5, seed=10),
    "demo": FlowEditSettings(steps=28, n_max=12, n_min=0, n_avg=1, source_cfg=3.5, target_cfg=6.0, seed=0),
})


def flowedit(
    velocities: EditVelocities,
    source: Tensor,
    sigmas: Tensor,
    *,
    n_max: int,
    n_min: int = 0,
    n_avg: int = 1,
    generator: torch.Generator,
    callback: StepCallback | None = None,
) -> Tensor:
    """Edit the clean latent `source` along the falling schedule `sigmas` (ending at 0); see the module docstring.

    `generator` (CPU) draws every fresh noise, so a seed gives the same edit on any device.
    Progress reports count the edited steps only.
    """
    sigmas = checked_sigmas(sigmas, source)
    total = len(sigmas) - 1
    check_window(total, n_max, n_min, n_avg)
    if float(sigmas[-1]) != 0.0:
        raise ValueError(f"FlowEdit's schedule must end at sigma 0, got {float(sigmas[-1])}")
    first = total - n_max
    edited = source.clone()
    tail: Tensor | None = None
    for i in range(first, total):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        sigmas_b = batch_sigma(sigma, source)
        if total - i > n_min:
            difference = torch.zeros_like(source)
            for _ in range(n_avg):
                noised = _noised(source, sigma, generator)
                # noised + (edited - source), not edited + noised - source: the same edit, but exact when
                # nothing has moved yet, so one prompt on both sides returns the source bit for bit.
                v_source, v_target = velocities.pair(noised, noised + (edited - source), sigmas_b)
                difference += v_target - v_source
            difference /= n_avg
            # The preview is the edit so far: a zero velocity makes the step's x0 prediction `edited`.
            report(callback, i - first, n_max, edited, sigma, sigma_next, torch.zeros_like(edited))
            edited = edited + (sigma_next - sigma) * difference
            continue
        if tail is None:  # the switch to plain sampling: re-noise the edit as the main phase does
            tail = _noised(source, sigma, generator) + (edited - source)
        velocity = velocities.target(tail, sigmas_b)
        report(callback, i - first, n_max, tail, sigma, sigma_next, velocity)
        tail = tail + (sigma_next - sigma) * velocity
    return edited if tail is None else tail


def _noised(source: Tensor, sigma: Tensor, generator: torch.Generator) -> Tensor:
    """`(1 - sigma) source + sigma eps` with eps drawn on the CPU from `generator`."""
    noise = torch.randn(source.shape, generator=generator, dtype=torch.float32).to(source.device, source.dtype)
    return (1 - sigma) * source + sigma * noise
