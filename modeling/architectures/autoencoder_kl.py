"""KL autoencoders (VAEs) in diffusers' key layout (`AutoencoderKL`), as FLUX, SD3 and SD ship them.

Block widths, depth and latent channels come from weight shapes. GroupNorm's group count leaves
no trace in the shapes, so it comes from a config.json beside the weights, else diffusers'
default of 32.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from modeling.state_dicts import indexed_count, shape_of

REQUIRED_KEYS = (
    "encoder.conv_in.weight",
    "encoder.down_blocks.*.resnets.*.conv1.weight",
    "encoder.conv_out.weight",
    "decoder.conv_in.weight",
    "decoder.up_blocks.*.resnets.*.conv1.weight",
    "decoder.conv_out.weight",
)
FILE_SETTINGS = (
    "norm_num_groups",
    "act_fn",
    "scaling_factor",
    "shift_factor",
    "latents_mean",
    "latents_std",
    "force_upcast",
    "sample_size",
)
DEFAULT_NORM_GROUPS = 32


def infer_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """AutoencoderKL arguments read from the weight shapes."""
    blocks = indexed_count(state, "encoder.down_blocks.")
    widths = tuple(shape_of(state, f"encoder.down_blocks.{index}.resnets.0.conv2.weight")[0] for index in range(blocks))
    return {
        "in_channels": shape_of(state, "encoder.conv_in.weight")[1],
        "out_channels": shape_of(state, "decoder.conv_out.weight")[0],
        "latent_channels": shape_of(state, "decoder.conv_in.weight")[1],
        "block_out_channels": widths,
        "down_block_types": ("DownEncoderBlock2D",) * blocks,
        "up_block_types": ("UpDecoderBlock2D",) * blocks,
        "layers_per_block": indexed_count(state, "encoder.down_blocks.0.resnets."),
        "norm_num_groups": DEFAULT_NORM_GROUPS,
        "use_quant_conv": "quant_conv.weight" in state,
        "use_post_quant_conv": "post_quant_conv.weight" in state,
        "mid_block_add_attention": any(key.startswith("encoder.mid_block.attentions.") for key in state),
    }


def build(config: Mapping[str, Any]) -> nn.Module:
    from diffusers import AutoencoderKL

    return AutoencoderKL(**config)


def latent_channels(config: Mapping[str, Any]) -> int:
    return int(config["latent_channels"])
