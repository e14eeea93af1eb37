"""ModelSamplingSD3: a fixed time shift of a flow model's noise schedule (SD3's 3.0)."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import Float, Model, node
from modeling.sampling_kinds import require_flow_model
from sampling.flow import FlowSampling

_NODE = "ModelSamplingSD3"


@node(id=_NODE, category="advanced/model", display="ModelSamplingSD3")
def model_sampling_sd3(
    model: Model,
    shift: Annotated[
        float,
        Float(3.0, min=0.0, max=100.0, step=0.01, tooltip="Higher spends more steps at high noise (composition)."),
    ],
) -> Model:
    """Shift the model's noise schedule by a constant factor, sigma' = shift*t / (1 + (shift-1)*t)."""
    return require_flow_model(_NODE, "model", model).with_sampling(FlowSampling.sd3(shift))
