"""CONDITIONING checks and the velocity model of one conditioning list, for the sampler nodes.

A CONDITIONING is ComfyUI's list of `[hidden [n, tokens, width], {"pooled_output": [n, P], ...}]`
pairs. Each pair is checked once, when a sampler or guider node receives it, so a prompt
encoded with the wrong text encoder fails with the node and input named, not inside the
transformer. This module declares no nodes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from sampling.contract import VelocityModel
from sampling.guidance import batched_cfg_velocity, cfg_velocity


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


def condition_velocity(model: Any, conditions: tuple[TextCondition, ...], batch: int) -> VelocityModel:
    """The model's velocity under these conditions; several entries average their predictions."""
    velocities = []
    for condition in conditions:
        context = tile_to_batch(condition.context, batch, model.device)
        pooled = tile_to_batch(condition.pooled, batch, model.device)

        def velocity(x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor = context,
                     pooled: torch.Tensor = pooled) -> torch.Tensor:
            return model.velocity(x, sigma, context, pooled)

        velocities.append(velocity)
    if len(velocities) == 1:
        return velocities[0]

    # ComfyUI's combined full-image conditions weigh each prediction equally.
    def averaged(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return torch.stack([velocity(x, sigma) for velocity in velocities]).mean(dim=0)

    return averaged


def guided_velocity(model: Any, positive: tuple[TextCondition, ...], negative: tuple[TextCondition, ...] | None,
                    batch: int, cfg: float) -> VelocityModel:
    """The CFG-guided velocity model; one model call per step on a doubled batch when both sides are single prompts
    of the same token length (the usual case), else separate calls."""
    if negative is None or math.isclose(cfg, 1.0):
        return condition_velocity(model, positive, batch)  # no unconditional model to evaluate
    if len(positive) == 1 and len(negative) == 1 and positive[0].context.shape[1:] == negative[0].context.shape[1:]:
        sides = (positive[0], negative[0])
        pair = TextCondition(torch.cat([tile_to_batch(side.context, batch, model.device) for side in sides]),
                             torch.cat([tile_to_batch(side.pooled, batch, model.device) for side in sides]))
        return batched_cfg_velocity(condition_velocity(model, (pair,), 2 * batch), cfg)
    return cfg_velocity(condition_velocity(model, positive, batch), condition_velocity(model, negative, batch), cfg)
