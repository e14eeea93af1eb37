"""SamplerFlowTurbo: FlowTurbo's block counts and velocity refiner as a SAMPLER."""

from __future__ import annotations

import logging
from typing import Annotated

from engine.node_api import Input, Int, NodeOutput, Sampler, VelocityRefiner, node
from sampling.samplers import get_sampler

_NODE = "SamplerFlowTurbo"
_LOG = logging.getLogger(__name__)


@node(id=_NODE, category="sampling/samplers", display="SamplerFlowTurbo")
def sampler_flowturbo(
    heun_steps: Annotated[
        int, Int(1, min=0, max=1000, tooltip="Heun steps first: 2 model calls each, the most accurate.")
    ],
    pseudo_steps: Annotated[
        int,
        Int(5, min=0, max=1000,
            tooltip="Then pseudo-corrector steps: Heun's order for 1 model call each (the last slope is reused)."),
    ],
    refiner_steps: Annotated[
        int,
        Int(3, min=0, max=1000,
            tooltip="Last, refiner steps: the small velocity refiner instead of the model (needs a refiner)."),
    ],
    refiner: Annotated[
        VelocityRefiner, Input(tooltip="A velocity refiner trained for this model (Load Velocity Refiner).")
    ] = None,
) -> NodeOutput | Sampler:
    """FlowTurbo (NeurIPS 2024): the step counts must add up to the scheduler's steps (1 + 5 + 3 = 9 by default)."""
    if refiner is None and refiner_steps > 0:
        message = (f"{_NODE}: no velocity refiner is connected, so the {refiner_steps} refiner steps run as "
                   f"pseudo-corrector steps ({heun_steps} Heun + {pseudo_steps + refiner_steps} pseudo-corrector)")
        _LOG.warning(message)
        sampler = get_sampler("flowturbo", heun_steps=heun_steps, pseudo_steps=pseudo_steps + refiner_steps)
        return NodeOutput(values=(sampler,), ui={"text": [message]})
    options = {"heun_steps": heun_steps, "pseudo_steps": pseudo_steps, "refiner_steps": refiner_steps}
    if refiner is not None:
        options["refiner"] = refiner
    return get_sampler("flowturbo", **options)
