"""LoraLoaderModelOnly: a LoRA on a diffusion model alone."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import Choice, Float, Input, Model, NodeContext, node
from modeling.model_refs import require_reference
from nodes.loaders._lora import LoraTarget, apply_lora, lora_fingerprint, validate_lora_name

_NODE = "LoraLoaderModelOnly"


@node(id=_NODE, category="loaders", display="LoraLoaderModelOnly", fingerprint=lora_fingerprint,
      validate=validate_lora_name)
def lora_loader_model_only(
    ctx: NodeContext,
    model: Annotated[Model, Input(tooltip="The diffusion model the LoRA will be applied to.")],
    lora_name: Annotated[str, Choice(source="loras", tooltip="A LoRA .safetensors file in models/loras.")],
    strength_model: Annotated[float, Float(1.0, min=-100.0, max=100.0, step=0.01,
                                           tooltip="How strongly to modify the diffusion model; negative inverts it.")],
) -> Model:
    """Apply a LoRA to a diffusion model only (its weights change only while it runs)."""
    (patched,) = apply_lora(ctx, _NODE, lora_name, [LoraTarget(require_reference(_NODE, "model", model,
                                                                                   "diffusion_model"),
                                                               strength_model)])
    return patched
