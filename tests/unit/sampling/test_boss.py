"""sampling/boss.py on the analytic Gaussian-mixture flow: cost matrix, DP optimality, schedule quality."""

from __future__ import annotations

from itertools import combinations

import pytest
import torch
from torch import Tensor

from sampling.boss import EulerCostMatrix, boss_sigmas, euler_cost_matrix, optimal_path, uniform_grid
from sampling.flow import time_snr_shift
from sampling.solvers import sample_euler
from tests.fixtures.gmm_flow import GaussianMixtureFlow
from tests.unit.sampling.oracle import CallCounter, uniform_sigmas


@pytest.fixture(scope="module")
def matrix(flow: GaussianMixtureFlow) -> EulerCostMatrix:
    noise = torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return euler_cost_matrix(flow.velocity, noise, uniform_grid(100))


def mean_error(flow: GaussianMixtureFlow, sigmas: Tensor) -> float:
    """Global error: mean distance of Euler on `sigmas` to the RK4 solution, on noise the matrix never saw."""
    noise = torch.randn(2000, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.inference_mode():
        reference = flow.integrate_rk4(noise, steps=400)
        return (sample_euler(flow.velocity, noise, sigmas.double()) - reference).norm(dim=1).mean().item()


def test_the_cost_matrix_prices_euler_jumps_from_one_trajectory(flow: GaussianMixtureFlow) -> None:
    noise = torch.randn(16, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    grid = uniform_grid(11)
    model = CallCounter(flow.velocity)
    matrix = euler_cost_matrix(model, noise, grid)
    assert model.calls == 10  # one Euler pass over the grid; no call per jump
    assert matrix.costs.shape == (11, 11)
    assert torch.isinf(matrix.costs.tril()).sum() == 11 * 12 // 2  # diagonal and below: no jump
    # one grid step is the trajectory itself; a two-step jump is priced by hand
    assert torch.allclose(torch.diagonal(matrix.costs, 1), torch.zeros(10, dtype=torch.float64), atol=1e-24)
    x1 = noise + flow.velocity(noise, 1.0) * (grid[1] - grid[0])
    x2 = x1 + flow.velocity(x1, grid[1]) * (grid[2] - grid[1])
    jump = noise + flow.velocity(noise, 1.0) * (grid[2] - grid[0])
    assert matrix.costs[0, 2].item() == pytest.approx((jump - x2).pow(2).sum(1).mean().item(), rel=1e-9)


def test_the_dynamic_programme_finds_the_brute_force_optimum() -> None:
    costs = torch.rand(9, 9, generator=torch.Generator().manual_seed(3), dtype=torch.float64).triu(1)
    costs[torch.tril(torch.ones(9, 9, dtype=torch.bool))] = float("inf")
    for jumps in range(1, 9):
        best = min(
            ((0, *middle, 8) for middle in combinations(range(1, 8), jumps - 1)),
            key=lambda path: sum(costs[a, b].item() for a, b in zip(path, path[1:], strict=False)),
        )
        assert tuple(optimal_path(costs, jumps)) == best, jumps
    with pytest.raises(ValueError, match="do not fit a grid of 9 points"):
        optimal_path(costs, 9)


@pytest.mark.parametrize("steps", [3, 4, 6, 8, 10])
def test_boss_beats_uniform_and_shifted_schedules_at_equal_calls(
    steps: int, flow: GaussianMixtureFlow, matrix: EulerCostMatrix
) -> None:
    # Margins are real but thin on this mixture: a brute-force search over a 21-point grid finds no
    # 4-step schedule better than 0.326, against 0.346 for uniform steps (BOSS: 0.345). Summed one-jump
    # costs also miss how errors grow or shrink later, so BOSS is not the global optimum.
    boss = boss_sigmas(matrix, steps)
    assert len(boss) == steps + 1 and boss[0] == 1.0 and boss[-1] == 0.0
    assert bool((boss[:-1] > boss[1:]).all())
    uniform = uniform_sigmas(steps)
    shifted = time_snr_shift(3.0, uniform)  # SD3's shift
    boss_error = mean_error(flow, boss)
    assert boss_error < mean_error(flow, uniform), steps
    assert boss_error < mean_error(flow, shifted), steps
