"""CONDITIONING checks: ComfyUI's conditioning lists checked against the model that will read them.

A CONDITIONING is ComfyUI's list of `[hidden [n, tokens, width], {"pooled_output": [n, P], ...}]`
pairs. Each pair is checked once, when a sampler, guider or editor node receives it, so a prompt
encoded with the wrong text encoder fails with the node and input named, not inside the
transformer. `tile_to_batch` repeats a conditioning batch to the latent batch as ComfyUI does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class TextCondition:
    """One CONDITIONING entry: token embeddings [n, tokens, width] and pooled embeddings [n, P]."""

    context: torch.Tensor
    pooled: torch.Tensor


def _config_value(model: Any, key: str) -> int | None:
    """A width from the transformer's config (diffusers models carry one), else None (unchecked)."""
    config = getattr(getattr(model, "module", None), "config", None)
    value = getattr(config, key, None) if config is not None else None
    if value is None and isinstance(config, Mapping):
        value = config.get(key)
    return value if isinstance(value, int) else None


def _shape(value: Any) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def _check_entry(where: str, entry: Any, model: Any) -> TextCondition:
    if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[1], Mapping)):
        raise ValueError(f"{where} must be a [tensor, dict] pair (the output of CLIPTextEncode), got {entry!r:.80}")
    context, extras = entry
    pooled = extras.get("pooled_output")
    if not isinstance(context, torch.Tensor) or context.ndim != 3:
        raise ValueError(f"{where} must hold a [batch, tokens, width] tensor, got {_shape(context)}")
    if not isinstance(pooled, torch.Tensor) or pooled.ndim != 2 or pooled.shape[0] != context.shape[0]:
        raise ValueError(
            f"{where} must carry a pooled_output of shape [{context.shape[0]}, width] (the model needs it), "
            f"got {_shape(pooled) if pooled is not None else 'none'}"
        )
    text_width = _config_value(model, "joint_attention_dim")
    if text_width is not None and context.shape[-1] != text_width:
        raise ValueError(
            f"{where} has text embeddings {context.shape[-1]} wide but the model expects {text_width} "
            f"(shape {tuple(context.shape)}); was it encoded with this model's text encoder?"
        )
    pooled_width = _config_value(model, "pooled_projection_dim")
    if pooled_width is not None and pooled.shape[-1] != pooled_width:
        raise ValueError(
            f"{where} has a pooled_output {pooled.shape[-1]} wide but the model expects {pooled_width}; "
            f"was it encoded with this model's text encoder?"
        )
    return TextCondition(context, pooled)


def unpack_conditioning(node: str, name: str, conditioning: Any, model: Any) -> tuple[TextCondition, ...]:
    """Check a CONDITIONING against the model and return its entries."""
    if not isinstance(conditioning, (list, tuple)) or not conditioning:
        raise ValueError(
            f"{node}: {name} must be a non-empty CONDITIONING list (the output of CLIPTextEncode), "
            f"got {conditioning!r:.80}"
        )
    return tuple(_check_entry(f"{node}: {name}[{index}]", entry, model) for index, entry in enumerate(conditioning))


def tile_to_batch(tensor: torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """Repeat a conditioning batch to the latent batch, as ComfyUI does (2 prompts, 4 latents: 1 2 1 2)."""
    if tensor.shape[0] != batch:
        repeats = -(-batch // tensor.shape[0])
        tensor = tensor.repeat(repeats, *([1] * (tensor.ndim - 1)))[:batch]
    return tensor.to(device)
