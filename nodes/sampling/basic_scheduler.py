"""BasicScheduler: the SIGMAS of a named schedule for the model's noise levels."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import Choice, Float, Int, Model, NodeContext, Sigmas, node
from modeling.model_refs import require_model
from sampling.schedules import compute_sigmas, scheduler_names

_NODE = "BasicScheduler"


@node(id=_NODE, category="sampling/schedulers", display="BasicScheduler")
def basic_scheduler(
    ctx: NodeContext,
    model: Model,
    scheduler: Annotated[str, Choice(options=tuple(scheduler_names()), tooltip="How the noise levels are spaced.")],
    steps: Annotated[int, Int(20, min=1, max=10000, tooltip="The number of denoising steps.")],
    denoise: Annotated[
        float,
        Float(1.0, min=0.0, max=1.0, step=0.01, tooltip="Below 1: only the last steps of a longer schedule (img2img)."),
    ],
) -> Sigmas:
    """Compute the noise levels (steps + 1 sigmas ending at 0) for SamplerCustomAdvanced."""
    reference = require_model(_NODE, "model", model)
    with ctx.models.use(reference) as loaded:  # the model's own sampling settings live with its weights
        return compute_sigmas(loaded.sampling, scheduler, steps, denoise)
