"""ModelSamplingFlux: FLUX's resolution-dependent time shift applied to a model."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import Float, Int, Model, node
from nodes.image._pixels import MAX_RESOLUTION
from modeling.sampling_kinds import require_flow_model
from sampling.flow import FlowSampling

_NODE = "ModelSamplingFlux"
_SIZE_TOOLTIP = "The image size in pixels the shift is computed for (more pixels, more shift)."


@node(id=_NODE, category="advanced/model", display="ModelSamplingFlux")
def model_sampling_flux(
    model: Model,
    max_shift: Annotated[float, Float(1.15, min=0.0, max=100.0, step=0.01, tooltip="mu at 4096 image tokens.")],
    base_shift: Annotated[float, Float(0.5, min=0.0, max=100.0, step=0.01, tooltip="mu at 256 image tokens.")],
    width: Annotated[int, Int(1024, min=16, max=MAX_RESOLUTION, step=8, tooltip=_SIZE_TOOLTIP)],
    height: Annotated[int, Int(1024, min=16, max=MAX_RESOLUTION, step=8, tooltip=_SIZE_TOOLTIP)],
) -> Model:
    """Shift the model's noise schedule by exp(mu), mu linear in the image's token count (FLUX)."""
    sampling = FlowSampling.flux(width, height, base_shift=base_shift, max_shift=max_shift)
    return require_flow_model(_NODE, "model", model).with_sampling(sampling)
