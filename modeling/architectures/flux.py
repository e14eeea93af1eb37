"""FLUX transformers in diffusers' key layout (`FluxTransformer2DModel`).

The config comes from weight shapes alone, so a lone .safetensors file loads without its
config.json. The velocity call packs the latent into 2x2 patches (modeling/packing.py), which
is why the transformer's `in_channels` is four times the latent channel count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from modeling.conditioning import FluxConditioning, require_batched, require_width
from modeling.errors import ModelFileError
from modeling.packing import PATCH, image_position_ids, pack_latents, text_position_ids, unpack_latents
from modeling.state_dicts import indexed_count, shape_of

REQUIRED_KEYS = (
    "x_embedder.weight",
    "context_embedder.weight",
    "time_text_embed.timestep_embedder.linear_1.weight",
    "time_text_embed.text_embedder.linear_1.weight",
    "transformer_blocks.*.attn.add_q_proj.weight",
    "single_transformer_blocks.*.proj_mlp.weight",
    "norm_out.linear.weight",
    "proj_out.weight",
)
# Shapes cannot tell the rotary split; a config.json beside the weights may.
FILE_SETTINGS = ("axes_dims_rope",)
# ComfyUI's default for guidance-distilled models (FLUX dev) when the graph gives none.
DEFAULT_GUIDANCE = 3.5


def rope_axes(head_dim: int) -> tuple[int, int, int]:
    """Rotary dims per position axis (index, row, column): (d/8, 7d/16, 7d/16), FLUX's (16, 56, 56) at d=128.

    Each axis needs an even size (rotary pairs), so row and column take 7d/16 rounded down to
    even and the index axis the rest: (4, 6, 6) at d=16, exactly the rule when d is a multiple of 32.
    """
    if head_dim % 2 or head_dim < 8:
        raise ModelFileError(f"attention head dim {head_dim} cannot be split into three even rotary axes")
    spatial = 7 * head_dim // 16 // 2 * 2
    return head_dim - 2 * spatial, spatial, spatial


def infer_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """FluxTransformer2DModel arguments read from the weight shapes."""
    inner_dim, in_channels = shape_of(state, "x_embedder.weight")
    norm_key = "single_transformer_blocks.0.attn.norm_q.weight"
    if "transformer_blocks.0.attn.norm_q.weight" in state:
        norm_key = "transformer_blocks.0.attn.norm_q.weight"
    (head_dim,) = shape_of(state, norm_key)
    if inner_dim % head_dim:
        raise ModelFileError(f"hidden size {inner_dim} is not a multiple of the attention head dim {head_dim}")
    return transformer_config(
        channels=(in_channels, shape_of(state, "proj_out.weight")[0]),
        blocks=(indexed_count(state, "transformer_blocks."), indexed_count(state, "single_transformer_blocks.")),
        hidden=inner_dim,
        head_dim=head_dim,
        text_widths=(shape_of(state, "context_embedder.weight")[1],
                     shape_of(state, "time_text_embed.text_embedder.linear_1.weight")[1]),
        guidance_embeds="time_text_embed.guidance_embedder.linear_1.weight" in state,
    )


def transformer_config(channels: tuple[int, int], blocks: tuple[int, int], hidden: int, head_dim: int,
                       text_widths: tuple[int, int], guidance_embeds: bool) -> dict[str, Any]:
    """FluxTransformer2DModel arguments from what any FLUX file layout shows: (in, out) channels, (double,
    single) block counts, the hidden size and head dim, the (T5, pooled CLIP) widths and guidance distillation."""
    in_channels, out_channels = channels
    config: dict[str, Any] = {
        "in_channels": in_channels,
        "num_layers": blocks[0],
        "num_single_layers": blocks[1],
        "attention_head_dim": head_dim,
        "num_attention_heads": hidden // head_dim,
        "joint_attention_dim": text_widths[0],
        "pooled_projection_dim": text_widths[1],
        "guidance_embeds": guidance_embeds,
        "axes_dims_rope": rope_axes(head_dim),
    }
    if out_channels != in_channels:
        config["out_channels"] = out_channels  # the class's default is in_channels
    return config


def check_config(config: Mapping[str, Any]) -> None:
    """Settings that shapes do not pin but the architecture still constrains."""
    axes = tuple(config["axes_dims_rope"])
    if sum(axes) != config["attention_head_dim"]:
        raise ModelFileError(
            f"axes_dims_rope {axes} must add up to the attention head dim {config['attention_head_dim']}"
        )


def build(config: Mapping[str, Any]) -> nn.Module:
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel(**config)


def latent_channels(config: Mapping[str, Any]) -> int:
    return int(config["in_channels"]) // (PATCH * PATCH)


def conditioning(context: torch.Tensor, extras: Mapping[str, Any], config: Any) -> FluxConditioning:
    """A CONDITIONING pair as FLUX reads it: the T5 sequence, `pooled_output` (CLIP-L), and FluxGuidance's
    `guidance` scale when the graph set one."""
    pooled = require_batched("its pooled_output", extras.get("pooled_output"), context.shape[0], 2)
    require_width("the text sequence", context, getattr(config, "joint_attention_dim", None), "joint_attention_dim")
    require_width("the pooled_output", pooled, getattr(config, "pooled_projection_dim", None),
                  "pooled_projection_dim")
    guidance = extras.get("guidance")
    if guidance is not None and not (isinstance(guidance, (int, float)) and not isinstance(guidance, bool)):
        raise ValueError(f"its guidance must be a number (FluxGuidance's), got {type(guidance).__name__}")
    scale = None if guidance is None else torch.full((context.shape[0],), float(guidance))
    return FluxConditioning(context, pooled, scale)


def velocity(
    module: nn.Module,
    x: torch.Tensor,
    sigma: torch.Tensor,
    condition: FluxConditioning,
    guidance: float | None,
) -> torch.Tensor:
    """The transformer's velocity for latent `x` [B, C, H, W] at noise level `sigma` [B].

    Odd H or W is padded by repeating the edge (2x2 patches need even sizes) and cropped off
    again. diffusers multiplies `timestep` (and `guidance`) by 1000 itself, so sigma goes in as is.
    A guidance-distilled model reads `guidance` when given (an editor's scale), else the
    conditioning's, else ComfyUI's default.
    """
    config = module.config
    context = condition.context
    height, width = x.shape[-2:]
    padded = F.pad(x, (0, width % PATCH, 0, height % PATCH), mode="replicate") if height % PATCH or width % PATCH else x
    guidance_tensor = None
    if config.guidance_embeds:
        if guidance is None and condition.guidance is not None:
            guidance_tensor = condition.guidance.to(sigma)
        else:
            guidance_tensor = torch.full_like(sigma, DEFAULT_GUIDANCE if guidance is None else guidance)
    tokens = module(
        hidden_states=pack_latents(padded),
        encoder_hidden_states=context,
        pooled_projections=condition.pooled,
        timestep=sigma,
        img_ids=image_position_ids(padded.shape[-2], padded.shape[-1], device=x.device),
        txt_ids=text_position_ids(context.shape[1], device=x.device),
        guidance=guidance_tensor,
        return_dict=False,
    )[0]
    return unpack_latents(tokens, padded.shape[-2], padded.shape[-1])[:, :, :height, :width]
