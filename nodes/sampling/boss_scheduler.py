"""BOSSScheduler: the step budget's best schedule over a BOSS cost matrix (dynamic programming)."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import Input, Int, Sigmas, node
from nodes.sampling.boss_cost_matrix import BossCost, require_cost_matrix
from sampling.boss import boss_sigmas

_NODE = "BOSSScheduler"


@node(id=_NODE, category="sampling/schedulers", display="BOSS Scheduler")
def boss_scheduler(
    cost: Annotated[BossCost, Input(tooltip="The jump costs from BOSSCostMatrix.")],
    steps: Annotated[int, Int(10, min=1, max=999, tooltip="The step budget (Euler: model calls).")],
) -> Sigmas:
    """BOSS (Nguyen et al. 2023): the steps + 1 grid sigmas with the least summed Euler jump error."""
    matrix = require_cost_matrix(_NODE, "cost", cost)
    points = len(matrix.grid)
    if steps > points - 1:
        raise ValueError(f"{_NODE}: steps {steps} is more than the cost matrix's grid allows ({points} points give "
                         f"at most {points - 1} steps); raise grid_points in BOSSCostMatrix")
    return boss_sigmas(matrix, steps)
