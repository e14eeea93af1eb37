"""ModelSamplingDiscrete: what a discrete VP model (SD1.x, SD2.x, SDXL) predicts, and zero terminal SNR."""

from __future__ import annotations

from typing import Annotated, Literal

from engine.node_api import Boolean, Model, node
from modeling.sampling_kinds import require_vp_model
from sampling.discrete_vp import DiscreteVP
from sampling.zero_snr import zero_terminal_snr

_NODE = "ModelSamplingDiscrete"
# ComfyUI's names -> DiscreteVP's predictions.
_PREDICTIONS = {"eps": "eps", "v_prediction": "v"}


@node(id=_NODE, category="advanced/model", display="ModelSamplingDiscrete")
def model_sampling_discrete(
    model: Model,
    sampling: Literal["eps", "v_prediction"],
    zsnr: Annotated[
        bool,
        Boolean(False, tooltip="Rescale the noise table to zero signal at its last step, for models trained so."),
    ],
) -> Model:
    """Set what the model predicts (the noise, or v as SD2-768-v does) on its own noise table."""
    reference, table = require_vp_model(_NODE, "model", model)
    schedule = DiscreteVP(table.alphas_cumprod, _PREDICTIONS[sampling])  # type: ignore[arg-type]
    return reference.with_sampling(zero_terminal_snr(schedule) if zsnr else schedule)
