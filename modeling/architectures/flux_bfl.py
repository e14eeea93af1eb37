"""FLUX transformers in Black Forest Labs' original key layout (`flux1-dev.safetensors`,
`flux1-schnell.safetensors`, the diffusion model inside ComfyUI's all-in-one checkpoints).

The module built is diffusers' `FluxTransformer2DModel` (modeling/architectures/flux.py builds and
calls it), so every node that runs FLUX runs these files unchanged. This module reads the config
from BFL shapes and renames the weights into diffusers' layout (`to_diffusers`). The config is
size-generic: the hidden size comes from `img_in`, the head dim from the q/k norm scale, block
counts from the numbered blocks; nothing assumes FLUX's 3072.

BFL fuses some projections that diffusers keeps apart: a double block's `qkv` (q, k, v) and a
single block's `linear1` (q, k, v, then the MLP input). They become views into the stored tensor,
never copies, so a memory-mapped file is not held twice. The final modulation stores (shift, scale)
where diffusers expects (scale, shift); that one small matrix is reordered.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch

from modeling.architectures.flux import transformer_config
from modeling.errors import ModelFileError
from modeling.state_dicts import indexed_count, shape_of

REQUIRED_KEYS = (
    "img_in.weight",
    "txt_in.weight",
    "time_in.in_layer.weight",
    "vector_in.in_layer.weight",
    "double_blocks.*.img_attn.qkv.weight",
    "double_blocks.*.img_attn.norm.key_norm.scale",
    "single_blocks.*.linear1.weight",
    "final_layer.linear.weight",
    "final_layer.adaLN_modulation.1.weight",
)
# Chroma keeps FLUX's blocks but replaces the modulation inputs with this: a different model.
EXCLUDED_KEYS = ("distilled_guidance_layer.*",)
# Stripped when present: a UNET file saved with ComfyUI's checkpoint prefix.
KEY_PREFIXES = ("model.diffusion_model.",)
# diffusers' FLUX blocks fix the MLP width at 4x the hidden size.
MLP_RATIO = 4

# Plain renames, BFL -> diffusers, of every Linear (".weight" and ".bias" both follow).
_TOP_LEVEL = {
    "img_in": "x_embedder",
    "txt_in": "context_embedder",
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
    "final_layer.linear": "proj_out",
}
_DOUBLE_BLOCK = {
    "img_mod.lin": "norm1.linear",
    "txt_mod.lin": "norm1_context.linear",
    "img_attn.proj": "attn.to_out.0",
    "txt_attn.proj": "attn.to_add_out",
    "img_mlp.0": "ff.net.0.proj",
    "img_mlp.2": "ff.net.2",
    "txt_mlp.0": "ff_context.net.0.proj",
    "txt_mlp.2": "ff_context.net.2",
}
_DOUBLE_NORMS = {
    "img_attn.norm.query_norm.scale": "attn.norm_q.weight",
    "img_attn.norm.key_norm.scale": "attn.norm_k.weight",
    "txt_attn.norm.query_norm.scale": "attn.norm_added_q.weight",
    "txt_attn.norm.key_norm.scale": "attn.norm_added_k.weight",
}
# Fused projections: BFL name -> the diffusers names of its consecutive row groups.
_DOUBLE_FUSED = {
    "img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
}
_SINGLE_BLOCK = {"linear2": "proj_out", "modulation.lin": "norm.linear"}
_SINGLE_NORMS = {"norm.query_norm.scale": "attn.norm_q.weight", "norm.key_norm.scale": "attn.norm_k.weight"}
_SINGLE_FUSED = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")
FINAL_MODULATION = "final_layer.adaLN_modulation.1"


def infer_config(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """FluxTransformer2DModel arguments read from BFL weight shapes."""
    hidden, in_channels = shape_of(state, "img_in.weight")
    (head_dim,) = shape_of(state, "double_blocks.0.img_attn.norm.key_norm.scale")
    if hidden % head_dim:
        raise ModelFileError(f"hidden size {hidden} (img_in) is not a multiple of the attention head dim {head_dim} "
                             f"(key_norm.scale)")
    _check_rows(state, "double_blocks.0.img_attn.qkv.weight", 3 * hidden, "3 x the hidden size (q, k, v)", hidden)
    _check_rows(state, "double_blocks.0.img_mlp.0.weight", MLP_RATIO * hidden,
                f"{MLP_RATIO} x the hidden size (the MLP width diffusers' FLUX blocks have)", hidden)
    _check_rows(state, "single_blocks.0.linear1.weight", (3 + MLP_RATIO) * hidden,
                f"{3 + MLP_RATIO} x the hidden size (q, k, v and a {MLP_RATIO}x MLP)", hidden)
    return transformer_config(
        channels=(in_channels, shape_of(state, "final_layer.linear.weight")[0]),
        blocks=(indexed_count(state, "double_blocks."), indexed_count(state, "single_blocks.")),
        hidden=hidden,
        head_dim=head_dim,
        text_widths=(shape_of(state, "txt_in.weight")[1], shape_of(state, "vector_in.in_layer.weight")[1]),
        guidance_embeds="guidance_in.in_layer.weight" in state,
    )


def _check_rows(state: Mapping[str, torch.Tensor], key: str, expected: int, meaning: str, hidden: int) -> None:
    rows = shape_of(state, key)[0]
    if rows != expected:
        raise ModelFileError(f"{key} has {rows} rows, expected {expected} = {meaning} for hidden size {hidden}")


def to_diffusers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The BFL state dict under diffusers' FluxTransformer2DModel keys.

    Fused projections are split into views; only the final modulation is copied (halves swapped).
    A key the table does not know is kept as it is, so the module's strict load names it.
    """
    hidden = shape_of(state, "img_in.weight")[0]
    converted: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for source, targets in _table(indexed_count(state, "double_blocks."), indexed_count(state, "single_blocks.")):
        if source not in state:
            continue
        used.add(source)
        tensor = state[source]
        if source.startswith(FINAL_MODULATION):
            shift, scale = tensor.chunk(2, dim=0)
            converted[targets[0]] = torch.cat([scale, shift], dim=0)
        elif len(targets) == 1:
            converted[targets[0]] = tensor
        else:
            parts = torch.split(tensor, _row_counts(targets, hidden), dim=0)  # views, no copy
            converted.update(zip(targets, parts, strict=True))
    converted.update((key, value) for key, value in state.items() if key not in used)
    return converted


def from_diffusers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `to_diffusers`, from the same table: a diffusers FLUX state dict in BFL's layout
    (fused projections concatenated, the final modulation back in (shift, scale) order)."""
    converted: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    table = _table(indexed_count(state, "transformer_blocks."), indexed_count(state, "single_transformer_blocks."))
    for source, targets in table:
        present = [target for target in targets if target in state]
        if not present:
            continue
        if len(present) != len(targets):
            raise ModelFileError(f"{source} is fused from {', '.join(targets)}, but only "
                                 f"{', '.join(present)} are present")
        used.update(targets)
        if source.startswith(FINAL_MODULATION):
            scale, shift = state[targets[0]].chunk(2, dim=0)
            converted[source] = torch.cat([shift, scale], dim=0)
        else:
            parts = [state[target] for target in targets]
            converted[source] = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)
    converted.update((key, value) for key, value in state.items() if key not in used)
    return converted


def linear_layers(double: int, single: int) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(BFL Linear layer, the diffusers Linear layers its rows become, in row order) for a model with
    these block counts. `FINAL_MODULATION` also swaps its two halves (see `to_diffusers`). LoRA files
    with BFL names are mapped with the same table (modeling/lora/formats.py)."""
    yield from ((source, (target,)) for source, target in _TOP_LEVEL.items())
    for index in range(double):
        here, there = f"double_blocks.{index}.", f"transformer_blocks.{index}."
        yield from ((here + source, (there + target,)) for source, target in _DOUBLE_BLOCK.items())
        yield from ((here + source, tuple(there + item for item in targets))
                    for source, targets in _DOUBLE_FUSED.items())
    for index in range(single):
        here, there = f"single_blocks.{index}.", f"single_transformer_blocks.{index}."
        yield from ((here + source, (there + target,)) for source, target in _SINGLE_BLOCK.items())
        yield here + "linear1", tuple(there + item for item in _SINGLE_FUSED)
    yield FINAL_MODULATION, ("norm_out.linear",)


def _table(double: int, single: int) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(BFL key, the diffusers keys it becomes in row order) for a model with these block counts."""
    for source, targets in linear_layers(double, single):
        for leaf in ("weight", "bias"):
            yield f"{source}.{leaf}", tuple(f"{target}.{leaf}" for target in targets)
    for index in range(double):
        here, there = f"double_blocks.{index}.", f"transformer_blocks.{index}."
        yield from ((here + source, (there + target,)) for source, target in _DOUBLE_NORMS.items())
    for index in range(single):
        here, there = f"single_blocks.{index}.", f"single_transformer_blocks.{index}."
        yield from ((here + source, (there + target,)) for source, target in _SINGLE_NORMS.items())


def _row_counts(targets: tuple[str, ...], hidden: int) -> list[int]:
    """Rows of each part of a fused projection: `hidden` per attention projection, the MLP input wider."""
    return [MLP_RATIO * hidden if ".proj_mlp." in target else hidden for target in targets]
