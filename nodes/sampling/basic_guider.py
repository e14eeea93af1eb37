"""BasicGuider: a GUIDER with one conditioning and no classifier-free guidance."""

from __future__ import annotations

from engine.node_api import Conditioning, Guider, Model, NodeContext, node
from modeling.conditioning import unpack_conditioning
from modeling.guidance import Guider as GuiderObject
from modeling.model_refs import require_model

_NODE = "BasicGuider"


@node(id=_NODE, category="sampling/guiders", display="Basic Guider")
def basic_guider(ctx: NodeContext, model: Model, conditioning: Conditioning) -> Guider:
    """Guide sampling with one conditioning only (one model call per step; for guidance-distilled models)."""
    reference = require_model(_NODE, "model", model)
    with ctx.models.use(reference) as loaded:  # the conditioning is checked against the model's widths
        return GuiderObject(reference, unpack_conditioning(_NODE, "conditioning", conditioning, loaded), None, 1.0)
