"""LoraLoader: a LoRA on a diffusion model and its text encoder, each at its own strength."""

from __future__ import annotations

from typing import Annotated, NamedTuple

from engine.node_api import Choice, Float, Input, Model, NodeContext, TextEncoder, node
from modeling.model_refs import require_reference
from nodes.loaders._lora import LoraTarget, apply_lora, lora_fingerprint, validate_lora_name

_NODE = "LoraLoader"


class PatchedModels(NamedTuple):
    MODEL: Model
    CLIP: TextEncoder


@node(id=_NODE, category="loaders", display="Load LoRA", fingerprint=lora_fingerprint, validate=validate_lora_name)
def lora_loader(
    ctx: NodeContext,
    model: Annotated[Model, Input(tooltip="The diffusion model the LoRA will be applied to.")],
    clip: Annotated[TextEncoder, Input(tooltip="The CLIP model the LoRA will be applied to.")],
    lora_name: Annotated[str, Choice(source="loras", tooltip="A LoRA .safetensors file in models/loras.")],
    strength_model: Annotated[float, Float(1.0, min=-100.0, max=100.0, step=0.01,
                                           tooltip="How strongly to modify the diffusion model; negative inverts it.")],
    strength_clip: Annotated[float, Float(1.0, min=-100.0, max=100.0, step=0.01,
                                          tooltip="How strongly to modify the CLIP model; negative inverts it.")],
) -> PatchedModels:
    """Apply a LoRA to a diffusion model and a CLIP model (the weights change only while they run)."""
    targets = [LoraTarget(require_reference(_NODE, "model", model, "diffusion_model"), strength_model),
               LoraTarget(require_reference(_NODE, "clip", clip, "text_encoder"), strength_clip)]
    patched_model, patched_clip = apply_lora(ctx, _NODE, lora_name, targets)
    return PatchedModels(patched_model, patched_clip)
