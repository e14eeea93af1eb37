"""CLIP text encoders in transformers' key layout (`CLIPTextModel`), as FLUX's and SD's clip_l.

transformers 5 saves the keys bare ("embeddings.token_embedding.weight"); older exports put
them under "text_model.", and ComfyUI under "transformer.text_model.". The family row strips
those prefixes, so every layout reaches `infer_config` the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from modeling.state_dicts import indexed_count, shape_of

KEY_PREFIXES = ("transformer.", "text_model.")
# Stored by some exports but not part of CLIPTextModel: the position ids buffer and CLIP's
# text projection and temperature, which only the contrastive head uses.
IGNORED_KEYS = ("embeddings.position_ids", "text_projection.weight", "logit_scale")
REQUIRED_KEYS = (
    "embeddings.token_embedding.weight",
    "embeddings.position_embedding.weight",
    "encoder.layers.*.self_attn.q_proj.weight",
    "encoder.layers.*.mlp.fc1.weight",
    "final_layer_norm.weight",
)
FILE_SETTINGS = (
    "num_attention_heads",
    "hidden_act",
    "layer_norm_eps",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
)
# OpenAI CLIP's head width; every released CLIP text tower uses 64-wide heads.
HEAD_DIM = 64
START_TOKEN_ID, END_TOKEN_ID = 49406, 49407


def infer_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """CLIPTextConfig arguments read from the weight shapes (plus CLIP's token ids)."""
    vocab_size, hidden_size = shape_of(state, "embeddings.token_embedding.weight")
    return {
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "num_hidden_layers": indexed_count(state, "encoder.layers."),
        "intermediate_size": shape_of(state, "encoder.layers.0.mlp.fc1.weight")[0],
        "max_position_embeddings": shape_of(state, "embeddings.position_embedding.weight")[0],
        "num_attention_heads": max(1, hidden_size // HEAD_DIM),
        "bos_token_id": START_TOKEN_ID,
        "eos_token_id": END_TOKEN_ID,
    }


def build(config: Mapping[str, Any]) -> nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(**config))
