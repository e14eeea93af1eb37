"""Shared measurements for the analytic-oracle tests: schedules, distances to a reference, fitted orders."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from sampling.contract import VelocityModel


def uniform_sigmas(steps: int) -> Tensor:
    """`steps + 1` float64 sigmas evenly spaced from 1 to 0."""
    return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)


def median_distance(out: Tensor, reference: Tensor) -> float:
    """Median per-sample distance.

    The median, because a few trajectories start near the ridge between the mixture's modes, where
    a step size change can send them to the other mode; those flips do not shrink with h and would
    swamp the mean.
    """
    return (out - reference).norm(dim=1).median().item()


def fitted_order(step_counts: Sequence[int], errors: Sequence[float]) -> float:
    """Least-squares slope of log(error) against log(h), h = 1 / steps: the observed global order."""
    log_h = torch.tensor([math.log(1.0 / n) for n in step_counts], dtype=torch.float64)
    log_e = torch.tensor([math.log(e) for e in errors], dtype=torch.float64)
    centred = log_h - log_h.mean()
    return float((centred * (log_e - log_e.mean())).sum() / (centred**2).sum())


class CallCounter:
    """Wraps a velocity model and counts its calls (model evaluations, NFE)."""

    def __init__(self, model: VelocityModel) -> None:
        self.model, self.calls = model, 0

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        self.calls += 1
        return self.model(x, sigma)


