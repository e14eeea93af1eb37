"""BOSS step sizes (Nguyen et al., "Bellman Optimal Step-size Straightening", arXiv 2312.16414), training-free phase.

Given a model and a budget of K steps, choose K + 1 sigmas from a fine grid so that K Euler jumps
follow the model's own trajectories as closely as possible:
1. integrate a few starting noises along the fine grid (`grid_points` sigmas from 1 to 0) with
   Euler, keeping every state x_i and velocity v_i;
2. the cost of jumping from grid point i to j is the mean squared distance between one Euler
   jump, `x_i + (s_j - s_i) v_i`, and the fine trajectory's x_j. This needs no model call
   beyond step 1, since v_i is already known;
3. dynamic programming (Bellman) finds the K-jump path from the first grid point to the last
   with the smallest summed cost.
The cost matrix depends on the model, conditioning and resolution but not on K, so it is built
once and any budget is then a cheap DP over it. (BOSS's second phase fine-tunes the model on the
chosen steps; that needs training and is not here.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sampling.contract import StepCallback, VelocityModel, batch_sigma, report


@dataclass(frozen=True)
class EulerCostMatrix:
    """Costs [N, N] of single Euler jumps between the points of a fine sigma grid [N] (1 down to 0).

    `costs[i, j]` for i < j is the mean squared jump error; other entries are +inf.
    """

    grid: Tensor
    costs: Tensor

    def __post_init__(self) -> None:
        size = len(self.grid)
        if self.grid.ndim != 1 or size < 2 or self.costs.shape != (size, size):
            raise ValueError(f"a BOSS cost matrix needs a grid of N >= 2 sigmas and N x N costs, got grid "
                             f"{tuple(self.grid.shape)} and costs {tuple(self.costs.shape)}")


def uniform_grid(points: int) -> Tensor:
    """`points` float64 sigmas evenly spaced from 1 to 0."""
    if points < 2:
        raise ValueError(f"a BOSS grid needs at least 2 points, got {points}")
    return torch.linspace(1.0, 0.0, points, dtype=torch.float64)


@torch.no_grad()
def euler_cost_matrix(
    model: VelocityModel, noise: Tensor, grid: Tensor, *, callback: StepCallback | None = None
) -> EulerCostMatrix:
    """Integrate `noise` [S, ...] along `grid` with Euler and price every jump (steps 1 and 2 above).

    `len(grid) - 1` model calls; `callback` reports each as a sampling step.
    """
    grid = grid.to(torch.float64)
    total = len(grid) - 1
    states, velocities = [noise], []
    x = noise
    for i in range(total):
        sigma = grid[i].to(x.dtype)
        velocity = model(x, batch_sigma(sigma.to(x.device), x))
        report(callback, i, total, x, sigma, grid[i + 1].to(x.dtype), velocity)
        velocities.append(velocity)
        x = x + velocity * float(grid[i + 1] - grid[i])
        states.append(x)
    flat_states = torch.stack([state.reshape(len(noise), -1) for state in states]).to(torch.float64)  # [N, S, D]
    flat_velocities = torch.stack([v.reshape(len(noise), -1) for v in velocities]).to(torch.float64)  # [N-1, S, D]
    size = len(grid)
    costs = torch.full((size, size), float("inf"), dtype=torch.float64)
    for i in range(total):
        jumps = (grid[i + 1:] - grid[i]).to(flat_states.device)  # [M]
        landed = flat_states[i][None] + jumps[:, None, None] * flat_velocities[i][None]  # [M, S, D]
        error = (landed - flat_states[i + 1:]).pow(2).sum(-1).mean(-1)  # mean over samples of the squared distance
        costs[i, i + 1:] = error.cpu()
    return EulerCostMatrix(grid.cpu(), costs)


def optimal_path(costs: Tensor, jumps: int) -> list[int]:
    """Grid indices 0 = p_0 < ... < p_jumps = N - 1 minimising the summed `costs[p_k, p_{k+1}]` (Bellman DP)."""
    size = costs.shape[0]
    if not 1 <= jumps <= size - 1:
        raise ValueError(f"BOSS: {jumps} steps do not fit a grid of {size} points (between 1 and {size - 1})")
    best = torch.full((size,), float("inf"), dtype=torch.float64)  # cheapest way to reach each point so far
    best[0] = 0.0
    came_from = []
    for _ in range(jumps):
        totals = best[:, None] + costs  # [from, to]
        best, previous = totals.min(dim=0)
        came_from.append(previous)
    path = [size - 1]
    for previous in reversed(came_from):
        path.append(int(previous[path[-1]]))
    path.reverse()
    return path


def boss_sigmas(matrix: EulerCostMatrix, steps: int) -> Tensor:
    """The `steps`-step schedule (steps + 1 float32 sigmas, 1 to 0) with the least summed Euler jump error."""
    return matrix.grid[optimal_path(matrix.costs, steps)].to(torch.float32)
