"""FlowTurbo (Zhao et al., NeurIPS 2024, arXiv 2409.18128): Heun, then pseudo-corrector, then refiner steps.

The schedule's steps are spent in three blocks, in this order (the paper's ablation found it best):
- H, Heun steps: predictor and corrector, two model calls each;
- P, pseudo-corrector steps: Heun, except the slope at the step's start is not recomputed; the
  slope the previous step evaluated at its predicted point is reused, so one call per step with
  Heun's order (the paper's proof; the analytic tests agree);
- R, refiner steps: a tiny network predicts the velocity's change from the last velocity, and the
  large model is not called at all.
Unlike ComfyUI's heun, H and P steps evaluate the model at the step's end even when it is sigma 0,
as FlowTurbo does: a flow model's velocity is defined there. Written in the FLUX convention
(sigma 1 is noise); the paper's code runs time the other way, with v = data - noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from sampling.contract import StepCallback, VelocityModel, batch_sigma, checked_sigmas, report


class VelocityRefiner(Protocol):
    """`refiner(x [B, ...], sigma [B], velocity [B, ...]) -> velocity offset [B, ...]`."""

    def __call__(self, x: Tensor, sigma: Tensor, velocity: Tensor) -> Tensor: ...


@dataclass(frozen=True)
class FlowTurboBlocks:
    """How many steps of each kind, in order: Heun, pseudo-corrector, refiner."""

    heun: int
    pseudo: int
    refiner: int

    @classmethod
    def for_schedule(cls, steps: int, heun: int, pseudo: int | None, refiner: int) -> FlowTurboBlocks:
        """The blocks for a schedule of `steps` steps; `pseudo=None` gives the pseudo-corrector what is left."""
        if heun < 0 or refiner < 0 or (pseudo is not None and pseudo < 0):
            raise ValueError(
                f"flowturbo: step counts must be >= 0, got heun={heun}, pseudo={pseudo}, refiner={refiner}"
            )
        if pseudo is None:
            pseudo = steps - heun - refiner
            if pseudo < 0:
                raise ValueError(f"flowturbo: {heun} Heun + {refiner} refiner steps do not fit a schedule of "
                                 f"{steps} steps")
        if heun + pseudo + refiner != steps:
            raise ValueError(f"flowturbo: {heun} Heun + {pseudo} pseudo-corrector + {refiner} refiner steps make "
                             f"{heun + pseudo + refiner}, but the schedule has {steps} steps; set the scheduler's "
                             f"steps to {heun + pseudo + refiner}")
        return cls(heun, pseudo, refiner)

    def model_calls(self) -> int:
        """Large-model evaluations for these blocks (the first P or R step pays one call when no H step came first)."""
        calls = 2 * self.heun + self.pseudo
        if self.heun == 0 and (self.pseudo or self.refiner):
            calls += 1
        return calls


def sample_flowturbo(
    model: VelocityModel,
    x: Tensor,
    sigmas: Tensor,
    *,
    callback: StepCallback | None = None,
    generator: torch.Generator | None = None,
    heun_steps: int = 1,
    pseudo_steps: int | None = None,
    refiner_steps: int = 0,
    refiner: VelocityRefiner | None = None,
) -> Tensor:
    """FlowTurbo's H^heun P^pseudo R^refiner sequence over `sigmas`; `pseudo_steps=None` fills the schedule.

    Refiner steps need a `refiner` trained for this model; without one, ask for none. `generator`
    is unused (the sampler is deterministic).
    """
    sigmas = checked_sigmas(sigmas, x)
    total = len(sigmas) - 1
    blocks = FlowTurboBlocks.for_schedule(total, heun_steps, pseudo_steps, refiner_steps)
    if blocks.refiner and refiner is None:
        raise ValueError(f"flowturbo: {blocks.refiner} refiner steps were asked for but no velocity refiner was given")
    # The slope at the last predicted point: the next P step's start slope, and an R step's input.
    carried: Tensor | None = None
    for i in range(total):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        step = sigma_next - sigma
        if i < blocks.heun or carried is None:
            velocity = model(x, batch_sigma(sigma, x))
        else:
            velocity = carried
        if i < blocks.heun + blocks.pseudo:
            report(callback, i, total, x, sigma, sigma_next, velocity)
            # Heun's predictor and corrector; for a P step `velocity` is the carried slope.
            carried = model(x + step * velocity, batch_sigma(sigma_next, x))
            x = x + (velocity + carried) * (step / 2)
        else:
            assert refiner is not None
            previous = velocity
            velocity = refiner(x, batch_sigma(sigma, x), previous) + previous
            report(callback, i, total, x, sigma, sigma_next, velocity)
            # The reference refines the end slope from the same input velocity, offset from this step's slope.
            velocity_next = refiner(x + step * velocity, batch_sigma(sigma_next, x), previous) + velocity
            x = x + (velocity + velocity_next) * (step / 2)
            carried = velocity
    return x
