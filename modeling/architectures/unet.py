"""Stable Diffusion UNets in diffusers' key layout (`UNet2DConditionModel`): SD1.x, SD2.x and SDXL.

The config comes from weight shapes: widths, depth, which blocks attend, transformer depth per block,
the text width, linear or convolutional attention projections, and SDXL's added embedding
(`addition_embed_type="text_time"`). Shapes cannot show the attention head split nor how SDXL's added
embedding divides between the pooled text and the six size ids; those are `FILE_SETTINGS`, which a
config.json beside the weights sets, with the released models' values as defaults where the shapes
say which model it is. The UNet is a discrete VP model: `velocity` returns its raw prediction (noise or
v) for the VP image and timestep that `DiscreteVP.model_input` gives, and `DiscreteVP.velocity` turns
that into the flow velocity.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from modeling.conditioning import CrossAttentionConditioning, SDXLConditioning, require_batched, require_width
from modeling.errors import ModelFileError
from modeling.state_dicts import indexed_count, shape_of

REQUIRED_KEYS = (
    "conv_in.weight",
    "time_embedding.linear_1.weight",
    "down_blocks.*.resnets.*.time_emb_proj.weight",
    "up_blocks.*.resnets.*.time_emb_proj.weight",
    "*attentions.*.transformer_blocks.*.attn2.to_k.weight",
    "conv_norm_out.weight",
    "conv_out.weight",
)
# UNets this module does not call correctly: class-conditioned (SD x4 upscaler, unCLIP), image-projected
# (Kandinsky), LCM's guidance-conditioned timestep embedding. A VAE (whose blocks look alike) keeps its
# `encoder.`/`decoder.` prefixes and has no time embedding, so the required keys already tell them apart.
EXCLUDED_KEYS = ("class_embedding.*", "encoder_hid_proj.*", "time_embedding.cond_proj.*")
FILE_SETTINGS = (
    "attention_head_dim",
    "num_attention_heads",
    "addition_time_embed_dim",
    "upcast_attention",
    "sample_size",
    "norm_num_groups",
    "norm_eps",
    "act_fn",
    "flip_sin_to_cos",
    "freq_shift",
    "downsample_padding",
    "mid_block_scale_factor",
    "center_input_sample",
)
# SD1.x: 8 heads in every block (diffusers' `attention_head_dim`, a head count in this class); SD2.x and
# SDXL: heads of 64 channels, so the count grows with the block width. SDXL's size ids: 256 wide each.
SD1_HEADS = 8
SD2_HEAD_WIDTH = 64
SDXL_TIME_EMBED_DIM = 256
SDXL_SIZE_IDS = 6
# ComfyUI sizes a size id the conditioning leaves out from the latent, at 8 pixels per latent cell
# (the SD VAEs' downscale); this marks such an id until the velocity call knows the latent.
FROM_LATENT = -1
VAE_SCALE = 8
_HEIGHT_IDS, _WIDTH_IDS = (0, 4), (1, 5)


def infer_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """UNet2DConditionModel arguments read from the weight shapes (defaults for what shapes cannot show)."""
    blocks = indexed_count(state, "down_blocks.")
    if not blocks or indexed_count(state, "up_blocks.") != blocks:
        raise ModelFileError(f"expected as many up_blocks as down_blocks (at least one), found "
                             f"{blocks} and {indexed_count(state, 'up_blocks.')}")
    widths = tuple(shape_of(state, f"down_blocks.{index}.resnets.0.conv2.weight")[0] for index in range(blocks))
    attends = [_has(state, f"down_blocks.{index}.attentions.") for index in range(blocks)]
    up_attends = [_has(state, f"up_blocks.{index}.attentions.") for index in range(blocks)]
    depths = [indexed_count(state, f"down_blocks.{index}.attentions.0.transformer_blocks.") if attends[index] else 1
              for index in range(blocks)]
    first = _first_attention(state)
    linear = len(shape_of(state, f"{first}.proj_in.weight")) == 2
    config: dict[str, Any] = {
        "in_channels": shape_of(state, "conv_in.weight")[1],
        "out_channels": shape_of(state, "conv_out.weight")[0],
        "block_out_channels": widths,
        "layers_per_block": indexed_count(state, "down_blocks.0.resnets."),
        "down_block_types": tuple("CrossAttnDownBlock2D" if attend else "DownBlock2D" for attend in attends),
        "up_block_types": tuple("CrossAttnUpBlock2D" if attend else "UpBlock2D" for attend in up_attends),
        "mid_block_type": _mid_block_type(state),
        "cross_attention_dim": shape_of(state, f"{first}.transformer_blocks.0.attn2.to_k.weight")[1],
        "transformer_layers_per_block": _layers_per_block(depths, attends),
        "use_linear_projection": linear,
        "conv_in_kernel": shape_of(state, "conv_in.weight")[-1],
        "conv_out_kernel": shape_of(state, "conv_out.weight")[-1],
        "attention_head_dim": _default_heads(widths, linear),
    }
    time_width = shape_of(state, "time_embedding.linear_1.weight")[0]
    if time_width != 4 * widths[0]:
        config["time_embedding_dim"] = time_width
    if shape_of(state, "down_blocks.0.resnets.0.time_emb_proj.weight")[0] == 2 * widths[0]:
        config["resnet_time_scale_shift"] = "scale_shift"
    if "add_embedding.linear_1.weight" in state:
        config["addition_embed_type"] = "text_time"
        config["projection_class_embeddings_input_dim"] = shape_of(state, "add_embedding.linear_1.weight")[1]
        config["addition_time_embed_dim"] = SDXL_TIME_EMBED_DIM
    return config


def _has(state: Mapping[str, torch.Tensor], prefix: str) -> bool:
    return any(key.startswith(prefix) for key in state)


def _first_attention(state: Mapping[str, torch.Tensor]) -> str:
    """The key prefix of the first cross-attention transformer (down blocks first, then the middle)."""
    for key in sorted(state):
        if key.endswith(".transformer_blocks.0.attn2.to_k.weight"):
            return key[: -len(".transformer_blocks.0.attn2.to_k.weight")]
    raise ModelFileError("no cross-attention layer (attentions.*.transformer_blocks.0.attn2.to_k.weight)")


def _mid_block_type(state: Mapping[str, torch.Tensor]) -> str | None:
    if _has(state, "mid_block.attentions."):
        return "UNetMidBlock2DCrossAttn"
    return "UNetMidBlock2D" if _has(state, "mid_block.") else None


def _layers_per_block(depths: list[int], attends: list[bool]) -> int | tuple[int, ...]:
    """One number when every attending block has the same depth (SD1/2: 1, the SDXL refiner: 4), else one per
    block, 1 where a block does not attend (SDXL: (1, 2, 10)), as the released config.json files state it."""
    attending = {depth for depth, attend in zip(depths, attends) if attend}
    return attending.pop() if len(attending) == 1 else tuple(depths)


def _default_heads(widths: tuple[int, ...], linear: bool) -> int | tuple[int, ...]:
    """SD2.x/SDXL (linear projections): 64-wide heads, one count per block; otherwise SD1.x's 8 heads."""
    if linear and all(width % SD2_HEAD_WIDTH == 0 for width in widths):
        return tuple(width // SD2_HEAD_WIDTH for width in widths)
    return SD1_HEADS


def check_config(config: Mapping[str, Any]) -> None:
    """SDXL's added embedding must split into the pooled text and six size ids."""
    if config.get("addition_embed_type") != "text_time":
        return
    total, per_id = int(config["projection_class_embeddings_input_dim"]), int(config["addition_time_embed_dim"])
    if total <= SDXL_SIZE_IDS * per_id:
        raise ModelFileError(
            f"the added embedding takes {total} inputs, too few for {SDXL_SIZE_IDS} size ids of "
            f"addition_time_embed_dim {per_id} plus the pooled text; set addition_time_embed_dim in a config.json "
            f"beside the weights"
        )


def build(config: Mapping[str, Any]) -> nn.Module:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**config)


def latent_channels(config: Mapping[str, Any]) -> int:
    return int(config["in_channels"])


def conditioning(context: torch.Tensor, extras: Mapping[str, Any], config: Any) -> Any:
    """A CONDITIONING pair as the UNet reads it: the text sequence for cross-attention; SDXL also the pooled
    text (`pooled_output`) and the size ids CLIPTextEncodeSDXL writes (`width`, `height`, `crop_w`, `crop_h`,
    `target_width`, `target_height`). As in ComfyUI, a missing size is the latent's (filled in by `velocity`),
    a missing crop 0 and a missing target the size."""
    width = getattr(config, "cross_attention_dim", None)
    require_width("the text sequence", context, width if isinstance(width, int) else None, "cross_attention_dim")
    if getattr(config, "addition_embed_type", None) != "text_time":
        return CrossAttentionConditioning(context)
    batch = context.shape[0]
    pooled = require_batched("its pooled_output", extras.get("pooled_output"), batch, 2)
    if config is not None:
        text_width = config.projection_class_embeddings_input_dim - SDXL_SIZE_IDS * config.addition_time_embed_dim
        require_width("the pooled_output", pooled, text_width,
                      "projection_class_embeddings_input_dim less the size ids")
    height, width = _size_id(extras, "height", FROM_LATENT), _size_id(extras, "width", FROM_LATENT)
    ids = [height, width, _size_id(extras, "crop_h", 0), _size_id(extras, "crop_w", 0),
           _size_id(extras, "target_height", height), _size_id(extras, "target_width", width)]
    time_ids = torch.tensor(ids, dtype=torch.int64).expand(batch, SDXL_SIZE_IDS).clone()
    return SDXLConditioning(context, pooled, time_ids)


def _size_id(extras: Mapping[str, Any], name: str, default: int) -> int:
    """A size id from the extras: a whole, non-negative number of pixels."""
    value = extras.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0 or value != int(value):
        raise ValueError(f"its {name} must be a whole number of pixels >= 0 (CLIPTextEncodeSDXL's), got {value!r}")
    return int(value)


def velocity(
    module: nn.Module,
    x: torch.Tensor,
    t: torch.Tensor,
    condition: CrossAttentionConditioning | SDXLConditioning,
    guidance: float | None,
) -> torch.Tensor:
    """The UNet's prediction (noise or v, by how it was trained) for the VP image `x` [B, C, H, W] at
    timesteps `t` [B]; `guidance` is for guidance-distilled models, which this is not."""
    added = None
    if isinstance(condition, SDXLConditioning):
        added = {"text_embeds": condition.pooled, "time_ids": sized_time_ids(condition.time_ids, x)}
    return module(x, t, encoder_hidden_states=condition.context, added_cond_kwargs=added, return_dict=False)[0]


def sized_time_ids(time_ids: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """SDXL's size ids with the ones the conditioning left to the latent set to its size in pixels."""
    sizes = torch.tensor([x.shape[-2] * VAE_SCALE, x.shape[-1] * VAE_SCALE], device=time_ids.device)
    slot_size = torch.zeros(SDXL_SIZE_IDS, dtype=time_ids.dtype, device=time_ids.device)
    slot_size[list(_HEIGHT_IDS)] = sizes[0]
    slot_size[list(_WIDTH_IDS)] = sizes[1]
    return torch.where(time_ids == FROM_LATENT, slot_size, time_ids)
