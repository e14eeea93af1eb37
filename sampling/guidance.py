"""Denoiser wrappers: a flow model's velocity as an x0 predictor, and classifier-free guidance.

These adapt models to the `Denoiser` contract the samplers take, so samplers never see
conditioning or guidance scales. Pure closures over the callables they wrap; no state.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from sampling.flow import sigma_view
from sampling.samplers import Denoiser

Velocity = Callable[[Tensor, Tensor], Tensor]


def flow_denoiser(velocity: Velocity) -> Denoiser:
    """Wrap `velocity(x, sigma) -> v` (v = noise - x0) as a denoiser returning `x0 = x - sigma * v`.

    This is ComfyUI's CONST.calculate_denoised; the samplers' `to_d` then gives back v exactly.
    """

    def denoise(x: Tensor, sigma: Tensor) -> Tensor:
        return x - sigma_view(sigma, x) * velocity(x, sigma)

    return denoise


def cfg_denoiser(cond: Denoiser, uncond: Denoiser | None, scale: float) -> Denoiser:
    """Classifier-free guidance, `uncond + scale * (cond - uncond)` (Ho & Salimans 2022).

    At scale 1 the formula equals `cond`, so, like ComfyUI's cfg1 optimisation, the unconditional
    model is not evaluated at all: a guidance-distilled model (FLUX dev) costs one call per step.
    The same holds when there is no unconditional model.
    """
    if uncond is None or math.isclose(scale, 1.0):
        return cond

    def guided(x: Tensor, sigma: Tensor) -> Tensor:
        positive = cond(x, sigma)
        negative = uncond(x, sigma)
        return negative + scale * (positive - negative)

    return guided


def batched_cfg_denoiser(paired: Denoiser, scale: float) -> Denoiser:
    """Classifier-free guidance from one call on a doubled batch, as ComfyUI batches cond and uncond.

    `paired(x2, sigma2)` sees `[x, x]` and `[sigma, sigma]` and returns the conditional predictions
    first, then the unconditional ones. Same result as `cfg_denoiser`, but one model call per step
    instead of two: on small latents a call's fixed cost is most of its time.
    """

    def guided(x: Tensor, sigma: Tensor) -> Tensor:
        positive, negative = paired(torch.cat([x, x]), torch.cat([sigma, sigma])).chunk(2)
        return negative + scale * (positive - negative)

    return guided
