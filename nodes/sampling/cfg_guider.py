"""CFGGuider: a GUIDER with classifier-free guidance between two conditionings."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import Conditioning, Float, Guider, Model, NodeContext, node
from modeling.conditioning import unpack_conditioning
from modeling.guidance import Guider as GuiderObject
from modeling.model_refs import require_model

_NODE = "CFGGuider"


@node(id=_NODE, category="sampling/guiders", display="CFG Guider")
def cfg_guider(
    ctx: NodeContext,
    model: Model,
    positive: Conditioning,
    negative: Conditioning,
    cfg: Annotated[
        float,
        Float(8.0, min=0.0, max=100.0, step=0.1, round=0.01, tooltip="Guidance scale; 1 skips the negative."),
    ],
) -> Guider:
    """Guide sampling towards positive and away from negative with classifier-free guidance."""
    reference = require_model(_NODE, "model", model)
    with ctx.models.use(reference) as loaded:  # the conditionings are checked against the model's widths
        return GuiderObject(
            reference,
            unpack_conditioning(_NODE, "positive", positive, loaded),
            unpack_conditioning(_NODE, "negative", negative, loaded),
            cfg,
        )
