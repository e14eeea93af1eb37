"""RF-Edit (Wang et al., ICML 2025, arXiv 2411.04746): RF-Solver inversion with shared attention features.

The source latent is inverted to noise with RF-Solver and the source prompt, then denoised with
RF-Solver and the target prompt. To keep what the prompt does not change, the noisiest `inject`
steps share features: while inverting through those steps the model's chosen attention blocks
store their value tensors, and while denoising through them the stored values replace the ones
the target pass computes (queries and keys stay the target's).

Every model evaluation has a key, `(step, stage)`: `step` is the index of the schedule interval
in denoising order (0 is the noisiest) and `stage` says which of RF-Solver's two evaluations it
is. Inversion crosses interval i upwards and evaluates at its low end and midpoint; denoising
crosses it downwards and evaluates at its high end and the same midpoint; both use the key i, so
each injected feature meets the feature stored for the same interval and stage (the reference
code's `t_prev` / `t_curr` pairing). How a model stores and injects is its business: this module
only says when, through `FeatureSharing`; `modeling/feature_sharing.py` does it for diffusers'
FLUX transformers with attention processors.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from enum import Enum
from typing import Protocol

from torch import Tensor

from sampling.contract import StepCallback, VelocityModel, batch_sigma, checked_sigmas, report
from sampling.inversion import inversion_schedule
from sampling.solvers import rf_solver_step


class Stage(Enum):
    """Which of an RF-Solver step's two model evaluations: at the step's start, or at its midpoint."""

    MAIN = "main"
    MIDPOINT = "midpoint"


class FeatureSharing(Protocol):
    """Scopes model evaluations: features are stored inside `recording`, replaced inside `injecting`."""

    def recording(self, step: int, stage: Stage) -> AbstractContextManager[None]: ...

    def injecting(self, step: int, stage: Stage) -> AbstractContextManager[None]: ...


class NoSharing:
    """Feature sharing for models without hooks: every scope is empty (RF-Solver inversion plus sampling)."""

    def recording(self, step: int, stage: Stage) -> AbstractContextManager[None]:
        return nullcontext()

    def injecting(self, step: int, stage: Stage) -> AbstractContextManager[None]:
        return nullcontext()


Scope = Callable[[Stage], AbstractContextManager[None]]


def _unshared(stage: Stage) -> AbstractContextManager[None]:
    return nullcontext()


def scoped_rf_solver_step(model: VelocityModel, x: Tensor, sigma: Tensor, sigma_next: Tensor, scope: Scope,
                          callback: StepCallback | None = None, index: int = 0, total: int = 1) -> Tensor:
    """One RF-Solver step (`solvers.rf_solver_step`) with each model evaluation inside `scope(stage)`."""
    with scope(Stage.MAIN):
        velocity = model(x, batch_sigma(sigma, x))
    report(callback, index, total, x, sigma, sigma_next, velocity)

    def at_midpoint(point: Tensor, midpoint_sigma: Tensor) -> Tensor:
        with scope(Stage.MIDPOINT):
            return model(point, batch_sigma(midpoint_sigma, point))

    return rf_solver_step(at_midpoint, x, sigma, sigma_next - sigma, velocity)


def check_inject(inject: int, total: int) -> None:
    if not 0 <= inject <= total:
        raise ValueError(f"RF-Edit's inject must be between 0 and the number of steps ({total}), got {inject}")


def invert_storing(model: VelocityModel, latent: Tensor, sigmas: Tensor, *, inject: int, sharing: FeatureSharing,
                   callback: StepCallback | None = None) -> Tensor:
    """RF-Solver inversion of `latent` along the falling schedule `sigmas`, storing features on its last
    (noisiest) `inject` steps."""
    rising = inversion_schedule(checked_sigmas(sigmas, latent))
    total = len(rising) - 1
    check_inject(inject, total)
    x = latent
    for i in range(total):
        step = total - 1 - i  # this interval's index in denoising order

        def scope(stage: Stage, step: int = step) -> AbstractContextManager[None]:
            return sharing.recording(step, stage)

        x = scoped_rf_solver_step(model, x, rising[i], rising[i + 1], scope if step < inject else _unshared,
                                  callback, i, total)
    return x


def denoise_injecting(model: VelocityModel, noise: Tensor, sigmas: Tensor, *, inject: int, sharing: FeatureSharing,
                      callback: StepCallback | None = None) -> Tensor:
    """RF-Solver sampling from `noise` along `sigmas`, injecting the stored features on the first `inject` steps."""
    sigmas = checked_sigmas(sigmas, noise)
    total = len(sigmas) - 1
    check_inject(inject, total)
    x = noise
    for i in range(total):

        def scope(stage: Stage, step: int = i) -> AbstractContextManager[None]:
            return sharing.injecting(step, stage)

        x = scoped_rf_solver_step(model, x, sigmas[i], sigmas[i + 1], scope if i < inject else _unshared,
                                  callback, i, total)
    return x


def rf_edit(
    source_model: VelocityModel,
    target_model: VelocityModel,
    latent: Tensor,
    sigmas: Tensor,
    *,
    inject: int,
    sharing: FeatureSharing,
    inversion_callback: StepCallback | None = None,
    callback: StepCallback | None = None,
) -> Tensor:
    """Invert `latent` with the source prompt, storing features, then denoise with the target prompt, injecting them."""
    noise = invert_storing(source_model, latent, sigmas, inject=inject, sharing=sharing, callback=inversion_callback)
    return denoise_injecting(target_model, noise, sigmas, inject=inject, sharing=sharing, callback=callback)
