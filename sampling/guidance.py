"""Classifier-free guidance over velocity models.

Guidance combines velocities, `uncond + scale * (cond - uncond)` (Ho & Salimans 2022). The
combination is affine in the model output, so guiding velocities gives the same x0 prediction,
`x - sigma * v`, as guiding x0 predictions the way ComfyUI does. Pure closures; no state.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sampling.contract import VelocityModel


def cfg_velocity(cond: VelocityModel, uncond: VelocityModel | None, scale: float) -> VelocityModel:
    """The guided velocity model.

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


def batched_cfg_velocity(paired: VelocityModel, scale: float) -> VelocityModel:
    """Classifier-free guidance from one call on a doubled batch, as ComfyUI batches cond and uncond.

    `paired(x2, sigma2)` sees `[x, x]` and `[sigma, sigma]` and returns the conditional velocities
    first, then the unconditional ones. Same result as `cfg_velocity`, but one model call per step
    instead of two: on small latents a call's fixed cost is most of its time.
    """

    def guided(x: Tensor, sigma: Tensor) -> Tensor:
        positive, negative = paired(torch.cat([x, x]), torch.cat([sigma, sigma])).chunk(2)
        return negative + scale * (positive - negative)

    return guided
