"""LoRA files in the layouts trainers write, turned into low-rank changes of one model's weights.

A LoRA stores, for some linear layers of a model, two factors `down` (rank x in) and `up`
(out x rank) and maybe an `alpha`; the layer's weight changes by `(alpha / rank) * up @ down`.
Trainers name the layers in four ways (model-formats.md section 7):

- kohya: `lora_unet_<name with _>.lora_down.weight` / `.lora_up.weight` / `.alpha`, with BFL FLUX
  names (`lora_unet_double_blocks_0_img_attn_qkv`) or diffusers names; `lora_te_` / `lora_te1_`
  for the CLIP text encoder;
- PEFT / diffusers: `transformer.<name>.lora_A.weight` / `.lora_B.weight`, also without the
  `transformer.` prefix, and `text_encoder.<name>` for CLIP; alpha from `.alpha` keys or from the
  PEFT settings diffusers writes into the header (`lora_alpha`, `alpha_pattern`), else 1;
- BFL / AI-toolkit: `diffusion_model.<BFL name>.lora_A.weight` / `.lora_B.weight`;
- XLabs: `double_blocks.0.processor.qkv_lora1.down.weight` (1: image stream, 2: text stream) and
  `single_blocks.0.processor.qkv_lora.down.weight`; no alpha is stored, so the scale is 1.

Flowmill's FLUX transformer is diffusers' `FluxTransformer2DModel`, where BFL's fused weights are
split: a change to a BFL `qkv` (rows q|k|v) or single-block `linear1` (rows q|k|v|mlp) becomes a
change to consecutive row ranges of `up` landing on `to_q`, `to_k`, `to_v` (and `proj_mlp`), and
the final layer's modulation swaps its (shift, scale) halves (model-formats.md 1.2 and 1.3).

`match_lora` reads names and shapes only, never a module: the model is described by
`parameter_shapes(module)`. Keys for another component (the text encoder's when patching the
transformer) are skipped; a LoRA that changes nothing in the model is reported by
`LoraMatch.require_changes` with the layout it was recognised as and the names the model expected.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from modeling.architectures.flux_bfl import FINAL_MODULATION, linear_layers
from modeling.families import Component

KOHYA, PEFT, BFL, XLABS = "kohya", "PEFT/diffusers", "BFL/AI-toolkit", "XLabs"
# Where diffusers' save_lora_weights puts the PEFT settings (lora_alpha, alpha_pattern) in the header.
ADAPTER_METADATA = "lora_adapter_metadata"
# How many keys an error message quotes.
_EXAMPLES = 3

# kohya: lora_unet_<name>.lora_down.weight; the group says which component the name is in.
_KOHYA = re.compile(
    r"^(lora_unet|lora_transformer|lora_te1|lora_te2|lora_te)_(.+)\.(lora_down\.weight|lora_up\.weight|alpha)$"
)
_KOHYA_COMPONENTS: Mapping[str, Component | None] = {
    "lora_unet": "diffusion_model", "lora_transformer": "diffusion_model",
    "lora_te": "text_encoder", "lora_te1": "text_encoder",
    "lora_te2": None,  # a second text encoder (SDXL's OpenCLIP, FLUX trainers' T5): not Flowmill's CLIP
}
# PEFT / diffusers and BFL / AI-toolkit: [prefix.]<dotted name>.lora_A.weight
_PEFT = re.compile(r"^(.+)\.(lora_A\.weight|lora_B\.weight|alpha)$")
_PEFT_PREFIXES: Mapping[str, Component | None] = {
    "transformer": "diffusion_model", "unet": "diffusion_model", "text_encoder": "text_encoder",
    "text_encoder_2": None,
}
# XLabs: [diffusion_model.]double_blocks.0.processor.qkv_lora1.down.weight
_XLABS = re.compile(
    r"^(?:diffusion_model\.)?(double_blocks|single_blocks)\.(\d+)\.processor\.(qkv_lora1|proj_lora1|qkv_lora2|"
    r"proj_lora2|qkv_lora|proj_lora)\.(down\.weight|up\.weight|alpha)$"
)
# The BFL layer each XLabs processor part changes. A single block's qkv_lora covers only the q|k|v
# rows of linear1 (its MLP rows are left alone), hence the pseudo-name linear1_qkv.
_XLABS_LAYERS = {
    ("double_blocks", "qkv_lora1"): "img_attn.qkv", ("double_blocks", "proj_lora1"): "img_attn.proj",
    ("double_blocks", "qkv_lora2"): "txt_attn.qkv", ("double_blocks", "proj_lora2"): "txt_attn.proj",
    ("single_blocks", "qkv_lora"): "linear1_qkv", ("single_blocks", "proj_lora"): "linear2",
}
_ROLES = {"lora_down.weight": "down", "lora_up.weight": "up", "lora_A.weight": "down", "lora_B.weight": "up",
          "down.weight": "down", "up.weight": "up", "alpha": "alpha"}
# Parts of other adapter kinds (DoRA, LoCon, LoHa, LoKr, full or bias differences, BFL control
# LoRAs' norm replacements) that a plain low-rank merge would silently get wrong.
_UNSUPPORTED = (
    (re.compile(r"dora_scale$"), "DoRA magnitudes"), (re.compile(r"\.lora_mid\."), "LoCon mid weights"),
    (re.compile(r"\.hada_"), "LoHa factors"), (re.compile(r"\.lokr_"), "LoKr factors"),
    (re.compile(r"\.diff(_b)?$"), "full weight or bias differences"),
    (re.compile(r"\.set_weight$"), "weight replacements"),
    (re.compile(r"\.(lora_B|lora_up)\.bias$"), "bias changes"), (re.compile(r"norm\.scale$"), "norm replacements"),
)


class LoraFormatError(ValueError):
    """A LoRA file that cannot be applied to a model: unknown, unsupported, incomplete or mis-sized."""


@dataclass(frozen=True, eq=False)
class LowRankChange:
    """`scale * up @ down` added to rows `rows` (all rows when None) of the parameter `target`."""

    target: str
    down: torch.Tensor
    up: torch.Tensor
    scale: float
    rows: tuple[int, int] | None = None


@dataclass(frozen=True)
class LoraMatch:
    """What a LoRA file changes in one component of a model, and what it left out."""

    layout: str | None
    component: Component
    changes: tuple[LowRankChange, ...]
    # Keys for another component, skipped on purpose.
    other_component: tuple[str, ...] = ()
    # Layers of this component the model has no weight for (names as the file spells them).
    unmatched: tuple[str, ...] = ()
    # Example keys of the file and example names the model expected, for the no-match error.
    file_examples: tuple[str, ...] = field(default=(), compare=False)
    expected_examples: tuple[str, ...] = field(default=(), compare=False)

    def require_changes(self, source: str) -> LoraMatch:
        """This match when it changes something, else a LoraFormatError saying what was found and expected."""
        if self.changes:
            return self
        if not self.file_examples:
            raise LoraFormatError(f"{source}: the file holds no tensors; expected LoRA factors (lora_down/lora_up "
                                  f"or lora_A/lora_B)")
        found = f"recognised as {self.layout}" if self.layout else "in no LoRA layout Flowmill knows"
        what = self.component.replace("_", " ")
        raise LoraFormatError(
            f"{source}: no weight of this LoRA fits the {what}: its keys are {found} (e.g. "
            f"{', '.join(repr(key) for key in self.file_examples)}), and the {what} expects names such as "
            f"{', '.join(repr(key) for key in self.expected_examples)}; it is probably a LoRA for another model"
        )


@dataclass(frozen=True)
class _Layer:
    """One layer of the file: the component its key names, and the layer's name as the key spells it."""

    component: str | None  # a Component; None: one Flowmill does not patch; "": the key does not say
    name: str
    naming: str  # "dotted" (diffusers / transformers names), "underscore" (kohya) or "bfl"
    prefix: str = ""  # the PEFT key's component prefix ("transformer"), which diffusers' metadata is keyed by


def parameter_shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    """The name and shape of every parameter of `module`: all that matching a LoRA needs."""
    return {name: tuple(parameter.shape) for name, parameter in module.named_parameters()}


def recognise_layout(keys: Iterable[str]) -> str | None:
    """The layout most of `keys` are written in, or None when none of them is a LoRA key."""
    counts = {KOHYA: 0, PEFT: 0, BFL: 0, XLABS: 0}
    for key in keys:
        layout = _layout_of(key)
        if layout is not None:
            counts[layout] += 1
    best = max(counts, key=lambda layout: counts[layout])
    return best if counts[best] else None


def match_lora(state: Mapping[str, torch.Tensor], component: Component, shapes: Mapping[str, tuple[int, ...]],
               source: str, adapter: Mapping[str, Any] | None = None) -> LoraMatch:
    """The changes LoRA `state` makes to `component`, a model whose parameters have `shapes`; `adapter` is
    the PEFT settings diffusers stores in the file's header (`adapter_settings`), for the alpha of
    layers the file gives no `.alpha` key.

    Raises LoraFormatError for parts a plain LoRA merge cannot apply, for a layer missing its `down`
    or `up` factor, and for factors whose sizes do not fit the weight they name.
    """
    _refuse_unsupported(state, source)
    layers: dict[_Layer, dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in state.items():
        parsed = _parse(key)
        if parsed is None:
            unknown.append(key)
            continue
        layer, role = parsed
        layers.setdefault(layer, {})[role] = value
    targets = _Targets(shapes)
    changes: list[LowRankChange] = []
    other: list[str] = []
    unmatched: list[str] = []
    for layer, factors in layers.items():
        if layer.component is None or (layer.component and layer.component != component):
            other.append(layer.name)
            continue
        pieces = targets.resolve(layer)
        if pieces is None:
            unmatched.append(layer.name)
            continue
        if "alpha" not in factors and adapter:
            alpha = _adapter_alpha(adapter, layer)
            factors = factors if alpha is None else {**factors, "alpha": torch.tensor(alpha)}
        changes += _changes(layer, factors, pieces, shapes, source)
    layout = recognise_layout(state)
    return LoraMatch(layout, component, tuple(changes), tuple(other), tuple(unmatched + unknown),
                     tuple(sorted(state)[:_EXAMPLES]), targets.examples(layout, component))


def adapter_settings(metadata: Mapping[str, str]) -> dict[str, Any]:
    """The PEFT settings (`transformer.lora_alpha`, `transformer.alpha_pattern`, ...) that diffusers writes
    as JSON under `lora_adapter_metadata` in a LoRA file's header; {} when there are none."""
    raw = metadata.get(ADAPTER_METADATA)
    if not raw:
        return {}
    try:
        settings = json.loads(raw)
    except json.JSONDecodeError as error:
        raise LoraFormatError(f"the header's {ADAPTER_METADATA} is not JSON ({error})") from None
    return settings if isinstance(settings, dict) else {}


def _adapter_alpha(adapter: Mapping[str, Any], layer: _Layer) -> float | None:
    """PEFT's alpha for `layer`: its `alpha_pattern` entry (a module-name suffix pattern, as PEFT matches
    them), else the component's `lora_alpha`; None when the settings give neither."""
    keyed = f"{layer.prefix}." if layer.prefix else ""
    patterns = adapter.get(f"{keyed}alpha_pattern") or {}
    for pattern, alpha in patterns.items():
        try:
            if re.fullmatch(rf"(?:.*\.)?(?:{pattern})", layer.name):
                return float(alpha)
        except re.error:
            if layer.name == pattern or layer.name.endswith(f".{pattern}"):
                return float(alpha)
    alpha = adapter.get(f"{keyed}lora_alpha")
    return None if alpha is None else float(alpha)


# -- parsing keys --------------------------------------------------------------------------------


def _layout_of(key: str) -> str | None:
    if _XLABS.match(key):
        return XLABS
    if _KOHYA.match(key):
        return KOHYA
    if _PEFT.match(key):
        return BFL if key.startswith("diffusion_model.") else PEFT
    return None


def _parse(key: str) -> tuple[_Layer, str] | None:
    """(layer, "down" / "up" / "alpha") for a LoRA key, None for a key of no known layout."""
    if found := _XLABS.match(key):
        blocks, index, part, role = found.groups()
        return _Layer("diffusion_model", f"{blocks}.{index}.{_XLABS_LAYERS[blocks, part]}", "bfl"), _ROLES[role]
    if found := _KOHYA.match(key):
        prefix, name, role = found.groups()
        return _Layer(_KOHYA_COMPONENTS[prefix], name, "underscore"), _ROLES[role]
    if found := _PEFT.match(key):
        name, role = found.groups()
        if name.startswith("diffusion_model."):
            return _Layer("diffusion_model", name.removeprefix("diffusion_model."), "bfl"), _ROLES[role]
        prefix, _, rest = name.partition(".")
        if prefix in _PEFT_PREFIXES and rest:
            return _Layer(_PEFT_PREFIXES[prefix], rest, "dotted", prefix), _ROLES[role]
        return _Layer("", name, "dotted"), _ROLES[role]  # no prefix: it names whichever model it fits
    return None


def _refuse_unsupported(state: Mapping[str, torch.Tensor], source: str) -> None:
    for marker, kind in _UNSUPPORTED:
        keys = [key for key in state if marker.search(key)]
        if keys:
            raise LoraFormatError(
                f"{source}: this LoRA has {kind} (e.g. {keys[0]!r}), which Flowmill does not apply; "
                f"only plain low-rank LoRA factors (down/up or lora_A/lora_B, with alpha) are supported"
            )


# -- matching names to the model's parameters ------------------------------------------------------

# A piece of a target: a parameter name and the rows of it a slice of `up` lands on (None: all).
_Piece = tuple[str, tuple[int, int] | None]


class _Targets:
    """The model's weights by every name a LoRA may use for them."""

    def __init__(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        self.shapes = shapes
        self.layers = [name.removesuffix(".weight") for name, shape in shapes.items()
                       if name.endswith(".weight") and len(shape) >= 2]
        self.dotted = {layer: layer for layer in self.layers}
        # transformers 5 names CLIPTextModel's weights without the "text_model." of older versions
        # and of the LoRAs trained on them; accept both spellings.
        for layer in self.layers:
            self.dotted.setdefault(f"text_model.{layer}", layer)
        self.underscore = {name.replace(".", "_"): layer for name, layer in self.dotted.items()}
        self.bfl = _bfl_table(shapes)
        self.bfl_underscore = {name.replace(".", "_"): name for name in self.bfl}

    def resolve(self, layer: _Layer) -> list[_Piece] | None:
        if layer.naming == "bfl":
            return self.bfl.get(layer.name)
        if layer.naming == "underscore":
            if layer.name in self.bfl_underscore:
                return self.bfl[self.bfl_underscore[layer.name]]
            found = self.underscore.get(layer.name)
        else:
            found = self.dotted.get(layer.name)
            if found is None and layer.name in self.bfl:  # an unprefixed BFL name
                return self.bfl[layer.name]
        return None if found is None else [(f"{found}.weight", None)]

    def examples(self, layout: str | None, component: Component) -> tuple[str, ...]:
        """A few layer names as `layout` would spell them for this model (PEFT's when no layout was found)."""
        if layout in (BFL, XLABS) and self.bfl:
            names = sorted(self.bfl, key=_in_first_block)[:_EXAMPLES]
            return tuple(f"diffusion_model.{name}.lora_A.weight" for name in names)
        names = sorted(self.layers, key=_in_first_block)[:_EXAMPLES]
        if layout == KOHYA:
            prefix = "lora_unet_" if component == "diffusion_model" else "lora_te_text_model_"
            return tuple(f"{prefix}{name.replace('.', '_')}.lora_down.weight" for name in names)
        prefix = "transformer." if component == "diffusion_model" else "text_encoder."
        return tuple(f"{prefix}{name}.lora_A.weight" for name in names)


def _in_first_block(name: str) -> bool:
    """A sort key putting the first block's layers first: those are the names a LoRA usually has."""
    return not re.search(r"(blocks|layers)\.0\.", name)


def _bfl_table(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, list[_Piece]]:
    """BFL FLUX layer name -> the pieces of diffusers FluxTransformer2DModel weights it covers, for the
    blocks this model has (model-formats.md 1.3); empty for a model that is not a FLUX transformer."""
    if "x_embedder.weight" not in shapes or "norm_out.linear.weight" not in shapes:
        return {}
    double = len(_block_indices(shapes, "transformer_blocks"))
    single = len(_block_indices(shapes, "single_transformer_blocks"))
    table = dict(linear_layers(double, single))
    for index in range(single):  # kohya also names the q|k|v rows of a single block's linear1 on their own
        table[f"single_blocks.{index}.linear1_qkv"] = table[f"single_blocks.{index}.linear1"][:3]
    pieces: dict[str, list[_Piece]] = {
        name: [(f"{layer}.weight", None) for layer in layers] for name, layers in table.items()
        if name != FINAL_MODULATION and all(f"{layer}.weight" in shapes for layer in layers)
    }
    # BFL's final modulation is (shift, scale); diffusers' norm_out is (scale, shift).
    half = shapes["norm_out.linear.weight"][0] // 2
    pieces[FINAL_MODULATION] = [("norm_out.linear.weight", (half, 2 * half)),
                                                ("norm_out.linear.weight", (0, half))]
    return pieces


def _block_indices(shapes: Mapping[str, tuple[int, ...]], blocks: str) -> list[int]:
    pattern = re.compile(rf"^{blocks}\.(\d+)\.")
    return sorted({int(found.group(1)) for name in shapes if (found := pattern.match(name))})


# -- building the changes --------------------------------------------------------------------------


def _changes(layer: _Layer, factors: Mapping[str, torch.Tensor], pieces: list[_Piece],
             shapes: Mapping[str, tuple[int, ...]], source: str) -> list[LowRankChange]:
    """The factors of one layer cut into one change per piece: consecutive row ranges of `up`."""
    if "down" not in factors or "up" not in factors:
        missing = "down (lora_down / lora_A)" if "down" not in factors else "up (lora_up / lora_B)"
        raise LoraFormatError(f"{source}: layer {layer.name!r} has no {missing} factor")
    down, up = factors["down"].flatten(1), factors["up"].flatten(1)
    rank = down.shape[0]
    if up.shape[1] != rank:
        raise LoraFormatError(f"{source}: layer {layer.name!r}: up is {tuple(up.shape)} and down "
                              f"{tuple(down.shape)}; up needs as many columns as down has rows (the rank)")
    scale = float(factors["alpha"]) / rank if "alpha" in factors else 1.0
    changes = []
    offset = 0
    for target, rows in pieces:
        shape = shapes[target]
        count = shape[0] if rows is None else rows[1] - rows[0]
        inputs = _prod(shape[1:])
        if down.shape[1] != inputs or offset + count > up.shape[0]:
            break
        changes.append(LowRankChange(target, down, up[offset:offset + count], scale, rows))
        offset += count
    if len(changes) != len(pieces) or offset != up.shape[0]:
        expected = sum(shapes[target][0] if rows is None else rows[1] - rows[0] for target, rows in pieces)
        raise LoraFormatError(
            f"{source}: layer {layer.name!r} is {up.shape[0]}x{down.shape[1]} in the LoRA but "
            f"{expected}x{_prod(shapes[pieces[0][0]][1:])} in the model: a LoRA for another size of this model"
        )
    return changes


def _prod(values: Iterable[int]) -> int:
    result = 1
    for value in values:
        result *= value
    return result
