"""Wan 2.1 / 2.2 video transformers in diffusers' key layout (`WanTransformer3DModel`).

The config comes from weight shapes alone: the 5-D patch embedding gives the patch size and the
input channels, the block count and the projections give the rest. The one thing shapes cannot
show is how the hidden size splits into heads; every released Wan uses a head dim of 128 (1.3B:
1536 = 12 x 128, TI2V-5B: 3072 = 24 x 128, 14B: 5120 = 40 x 128), so that is the default, and a
config.json beside the weights (or the file's metadata "config") may say otherwise.

Latents are video, [B, C, T, H, W]: 16 channels for Wan 2.1 and the 2.2 A14B experts, 48 for
TI2V-5B. Image-to-video models whose transformer reads more channels than it writes (36 = 16
latent + 4 mask + 16 reference image) need WanImageToVideo's concat latent, which is not wired
yet; their conditioning is refused with that said.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from modeling.conditioning import WanConditioning, describe, require_width, tile_to_batch
from modeling.errors import ModelFileError
from modeling.state_dicts import indexed_count, shape_of

REQUIRED_KEYS = (
    "patch_embedding.weight",
    "condition_embedder.time_embedder.linear_1.weight",
    "condition_embedder.time_proj.weight",
    "condition_embedder.text_embedder.linear_1.weight",
    "blocks.*.attn1.to_q.weight",
    "blocks.*.attn2.to_k.weight",
    "blocks.*.ffn.net.0.proj.weight",
    "blocks.*.scale_shift_table",
    "scale_shift_table",
    "proj_out.weight",
)
# diffusers' Wan derivatives that share these keys but add parts WanTransformer3DModel lacks (VACE's
# control blocks, Wan-Animate's face and motion encoders, SkyReels-V2's fps embedding, Helios's
# multi-scale patch embeddings): a different model each, not a Wan this row can build.
EXCLUDED_KEYS = (
    "vace_*",
    "face_encoder.*",
    "motion_encoder.*",
    "pose_patch_embedding.*",
    "fps_embedding.*",
    "patch_short.*",
)
# Shapes cannot tell the head split, the norm epsilon or the rotary table length; a config.json may.
FILE_SETTINGS = ("num_attention_heads", "attention_head_dim", "eps", "rope_max_seq_len")
# The head dim of every released Wan (see the module docstring).
HEAD_DIM = 128
# Wan 2.1's own flow shift for text-to-video (Wan2.1 generate.py `sample_shift`); ComfyUI's
# ModelSamplingSD3 default for Wan is 8.0, diffusers' converted schedulers use 3.0.
DEFAULT_SHIFT = 5.0
# umT5's context length. Wan's own forward zero-pads the text to it, as diffusers' WanPipeline and
# ComfyUI's umT5 tokenizer (min_length 512, padding zeroed) do before the transformer.
TEXT_LENGTH = 512
# diffusers' Wan takes `timestep` in training steps (WanPipeline feeds scheduler timesteps =
# sigma * 1000), unlike its FLUX, which scales flow time itself.
TIMESTEPS = 1000


def infer_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """WanTransformer3DModel arguments read from the weight shapes."""
    patch_shape = shape_of(state, "patch_embedding.weight")
    if len(patch_shape) != 5:
        raise ModelFileError(f"patch_embedding.weight must be a 5-D (3-D convolution) weight, got {patch_shape}")
    inner_dim, in_channels, *patch_size = patch_shape
    projected, proj_in = shape_of(state, "proj_out.weight")
    patch_volume = math.prod(patch_size)
    if projected % patch_volume or proj_in != inner_dim:
        raise ModelFileError(f"proj_out.weight {(projected, proj_in)} does not fit a hidden size of {inner_dim} "
                             f"and patches of {tuple(patch_size)}")
    if "blocks.0.attn1.norm_q.weight" not in state:
        raise ModelFileError("missing weight 'blocks.0.attn1.norm_q.weight' (diffusers' Wan always has q/k norms)")
    image_key = "condition_embedder.image_embedder.ff.net.0.proj.weight"
    pos_key = "condition_embedder.image_embedder.pos_embed"
    added_key = "blocks.0.attn2.add_k_proj.weight"
    # Head counts follow the head dim of 128 when the hidden size allows it; otherwise only a
    # config.json can tell, and check_config says so.
    heads = inner_dim // HEAD_DIM if inner_dim % HEAD_DIM == 0 else None
    return {
        "patch_size": tuple(patch_size),
        "num_attention_heads": heads,
        "attention_head_dim": HEAD_DIM if heads is not None else None,
        "in_channels": in_channels,
        "out_channels": projected // patch_volume,
        "text_dim": shape_of(state, "condition_embedder.text_embedder.linear_1.weight")[1],
        "freq_dim": shape_of(state, "condition_embedder.time_embedder.linear_1.weight")[1],
        "ffn_dim": shape_of(state, "blocks.0.ffn.net.0.proj.weight")[0],
        "num_layers": indexed_count(state, "blocks."),
        "cross_attn_norm": "blocks.0.norm2.weight" in state,
        "qk_norm": "rms_norm_across_heads",
        # Wan 2.1 I2V / FLF2V: a CLIP-vision embedder and image key/value projections in every block.
        "image_dim": shape_of(state, image_key)[1] if image_key in state else None,
        "added_kv_proj_dim": shape_of(state, added_key)[1] if added_key in state else None,
        "pos_embed_seq_len": shape_of(state, pos_key)[1] if pos_key in state else None,
    }


def check_config(config: Mapping[str, Any]) -> None:
    """The head split must be known (from the 128 rule or a config.json) and give rotary axes."""
    heads, head_dim = config.get("num_attention_heads"), config.get("attention_head_dim")
    if heads is None or head_dim is None:
        raise ModelFileError(
            "the hidden size is not a multiple of Wan's head dim 128, so the weights cannot tell how many "
            "attention heads it has; put num_attention_heads and attention_head_dim in a config.json beside them"
        )
    if head_dim % 2 or head_dim < 6:
        raise ModelFileError(f"attention head dim {head_dim} cannot be split into three even rotary axes")


def build(config: Mapping[str, Any]) -> nn.Module:
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(**config)


def latent_channels(config: Mapping[str, Any]) -> int:
    """The channels it denoises: what it writes (16, or 48 for TI2V-5B); I2V models read more."""
    return int(config["out_channels"])


def _setting(config: Any, name: str) -> Any:
    return getattr(config, name, None) if config is not None else None


def conditioning(context: torch.Tensor, extras: Mapping[str, Any], config: Any) -> WanConditioning:
    """A CONDITIONING pair as Wan reads it: the umT5 sequence, zero-padded to 512 tokens as Wan pads it,
    and for image-branch models (Wan 2.1 I2V) the CLIP-vision tokens in extras "clip_vision_output"
    (a [B, 257, 1280] tensor or CLIPVisionEncode's output with `penultimate_hidden_states`)."""
    require_width("the text sequence", context, _setting(config, "text_dim"), "text_dim")
    in_channels, out_channels = _setting(config, "in_channels"), _setting(config, "out_channels")
    if in_channels is not None and out_channels is not None and in_channels > out_channels:
        raise ValueError(
            f"this Wan model is image-to-video: its transformer reads {in_channels} channels ({out_channels} latent "
            f"+ {in_channels - out_channels} of mask and reference-image latent from WanImageToVideo's concat "
            f"latent), which Flowmill does not support yet; use a text-to-video Wan model"
        )
    image_dim = _setting(config, "image_dim")
    image = None
    if image_dim is not None:
        image = _image_embedding(extras.get("clip_vision_output"), context.shape[0], image_dim)
        if context.shape[1] > TEXT_LENGTH:
            # diffusers' Wan attention finds the image tokens as everything before the last 512.
            raise ValueError(f"the text sequence has {context.shape[1]} tokens; an image-to-video Wan model takes at "
                             f"most {TEXT_LENGTH} (umT5's length)")
    return WanConditioning(_padded_text(context), image)


def _padded_text(context: torch.Tensor) -> torch.Tensor:
    missing = TEXT_LENGTH - context.shape[1]
    return F.pad(context, (0, 0, 0, missing)) if missing > 0 else context


def _image_embedding(value: Any, batch: int, image_dim: int) -> torch.Tensor:
    """The CLIP-vision tokens [batch, tokens, image_dim] from a tensor or a CLIP-vision output."""
    if value is None:
        raise ValueError(
            "this Wan model has an image branch and needs a CLIP-vision embedding: extras 'clip_vision_output' "
            "(CLIPVisionEncode's output, as WanImageToVideo adds it), got none"
        )
    tokens = value if isinstance(value, torch.Tensor) else getattr(value, "penultimate_hidden_states", None)
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 3 or tokens.shape[0] not in (1, batch):
        got = describe(tokens) if tokens is not None else f"a {type(value).__name__} without penultimate_hidden_states"
        batches = "1" if batch == 1 else f"1 or {batch}"
        raise ValueError(f"its clip_vision_output must be CLIP-vision tokens [{batches}, 257, {image_dim}] "
                         f"(penultimate_hidden_states), got {got}")
    require_width("the clip_vision_output", tokens, image_dim, "image_dim")
    return tile_to_batch(tokens, batch)


def velocity(
    module: nn.Module,
    x: torch.Tensor,
    t: torch.Tensor,
    condition: WanConditioning,
    guidance: float | None,
) -> torch.Tensor:
    """The transformer's velocity for video latent `x` [B, C, T, H, W] at flow time `t` [B].

    Sizes that are not multiples of the patch (2x2 in space; 1 in time for released models) are padded
    by repeating the edge and cropped off again. Wan is not guidance-distilled: `guidance` is unused.
    The timestep goes in float32, as training steps.
    """
    patch = tuple(module.config.patch_size)
    frames, height, width = x.shape[-3:]
    pad = ((-width) % patch[2], (-height) % patch[1], (-frames) % patch[0])
    padded = F.pad(x, (0, pad[0], 0, pad[1], 0, pad[2]), mode="replicate") if any(pad) else x
    output = module(
        hidden_states=padded,
        timestep=t.float() * TIMESTEPS,
        encoder_hidden_states=condition.context,
        encoder_hidden_states_image=condition.image_embedding,
        return_dict=False,
    )[0]
    return output[:, :, :frames, :height, :width]
