"""Inversion: run an ODE sampler from data to noise, the reverse of a denoising schedule.

The flow ODE is deterministic, so integrating it from sigma 0 up to sigma s maps a clean latent
to the state at s that would denoise back to it (exactly, as the step size goes to zero). Editors
start from such states; the round-trip error (invert, then sample) measures a solver's accuracy.
RF-Solver is the default, after Wang et al. (arXiv 2411.04746), whose second order makes the
round trip far tighter than Euler's at equal model calls.
"""

from __future__ import annotations

from torch import Tensor

from sampling.contract import SamplerFunction, StepCallback, VelocityModel


def inversion_schedule(sigmas: Tensor) -> Tensor:
    """The ascending schedule that undoes the denoising schedule `sigmas`, which must end at sigma 0."""
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise ValueError(f"inversion needs a schedule of at least two sigmas, got shape {tuple(sigmas.shape)}")
    if float(sigmas[-1]) != 0.0:
        raise ValueError(f"inversion starts from data, so the denoising schedule must end at sigma 0, "
                         f"got {float(sigmas[-1])}")
    if not bool((sigmas[:-1] > sigmas[1:]).all()):
        raise ValueError("inversion needs a strictly falling denoising schedule (sigmas high to 0)")
    return sigmas.flip(0)


def invert(
    model: VelocityModel,
    sampler: SamplerFunction,
    sigmas: Tensor,
    latent: Tensor,
    *,
    callback: StepCallback | None = None,
) -> Tensor:
    """The state at `sigmas[0]` that the denoising schedule `sigmas` would carry to `latent`.

    `sampler` must be deterministic and valid on a rising schedule (the registry's `invertible`).
    """
    return sampler(model, latent, inversion_schedule(sigmas), callback=callback)


def resume_noise(state: Tensor, latent: Tensor, sigma: float) -> Tensor:
    """The noise that makes `(1 - sigma) * latent + sigma * noise` equal `state`.

    Sampling starts from exactly that mix (sampling/run.py), so handing this noise to a sampler
    with the same latent resumes from the inverted state, at sigma 1 or at a partial sigma.
    """
    if not 0.0 < sigma <= 1.0:
        raise ValueError(f"an inverted state needs a sigma in (0, 1], got {sigma}")
    return (state - (1.0 - sigma) * latent) / sigma
