"""BOSSCostMatrix: the Euler jump costs BOSS optimises over, for one model, conditioning and resolution.

Separate from BOSSScheduler so the executor's cache keeps the matrix: changing the step budget
re-runs only the scheduler's dynamic programme, not the model calls.
"""

from __future__ import annotations

from typing import Annotated, Any

from engine.node_api import Guider, Input, Int, Latent, NodeContext, Seed, Socket, node
from modeling.guidance import require_guider
from modeling.latents import prepare_latent
from modeling.previews import SamplingProgress
from sampling.boss import EulerCostMatrix, euler_cost_matrix, uniform_grid
from sampling.noise import seeded_noise

_NODE = "BOSSCostMatrix"
BossCost = Annotated[Any, Socket("BOSS_COST")]


@node(id=_NODE, category="sampling/schedulers", display="BOSS Cost Matrix")
def boss_cost_matrix(
    ctx: NodeContext,
    guider: Annotated[Guider, Input(tooltip="The model, prompts and CFG the schedule is for (CFGGuider).")],
    latent_image: Annotated[Latent, Input(tooltip="Sets the resolution (EmptyLatentImage); its content is unused.")],
    grid_points: Annotated[
        int, Int(100, min=3, max=1000, tooltip="Sigmas on the fine grid the steps are chosen from (BOSS uses 100).")
    ],
    samples: Annotated[
        int, Int(4, min=1, max=256, tooltip="Noise samples whose trajectories are averaged; each costs a batch item.")
    ],
    seed: Annotated[int, Seed(tooltip="Seed of the sample noises.")],
) -> BossCost:
    """Price every Euler jump between fine-grid sigmas from a few Euler trajectories (grid_points - 1 calls)."""
    guider = require_guider(_NODE, "guider", guider)
    with ctx.models.use(guider.model) as model:
        shape = prepare_latent(_NODE, "latent_image", latent_image, model)["samples"].shape
        noise = seeded_noise(seed, (samples, *shape[1:])).to(model.device)
        return euler_cost_matrix(guider.velocity_model(model, samples), noise, uniform_grid(grid_points),
                                 callback=SamplingProgress(ctx.progress, model))


def require_cost_matrix(node: str, name: str, value: object) -> EulerCostMatrix:
    """Raise ValueError unless `value` is a BOSS_COST."""
    if not isinstance(value, EulerCostMatrix):
        raise ValueError(f"{node}: {name} must be a BOSS_COST from BOSSCostMatrix, got {type(value).__name__}")
    return value

