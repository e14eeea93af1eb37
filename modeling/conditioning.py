"""Conditioning: ComfyUI's CONDITIONING lists turned into what one model family reads.

A CONDITIONING socket carries ComfyUI's list of `[hidden [n, tokens, width], {extras}]` pairs, so
workflows and clients stay ComfyUI's. What a model reads differs by family, so each family turns a
pair into its own frozen object (`ModelFamily.conditioning`, built in its architecture module):

- FLUX: the T5 sequence, the CLIP pooled vector and the distilled guidance scale (`FluxConditioning`);
- SD3: the joint CLIP-L/G + T5 sequence and the pooled vector (`SD3Conditioning`);
- SD1.x/2.x: the cross-attention sequence alone (`CrossAttentionConditioning`);
- SDXL: the sequence, the pooled vector and the six size ids its `y` is built from (`SDXLConditioning`);
- Wan: the umT5 sequence and, for image-to-video, the CLIP-vision embedding (`WanConditioning`).

Every object holds tensors with the batch first (or None), so batching is generic over the fields:
`tiled` repeats a batch to the latent's, `joined` concatenates several (CFG's one doubled call),
`joinable` says when that is possible. `unpack_conditioning` checks a socket value once, where a
sampler, guider or editor node receives it, so a prompt encoded for another model fails with the node
and input named, not inside the transformer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import torch

Condition = TypeVar("Condition")
# A family's builder: (hidden, extras, the module's config) -> its conditioning object; raises
# ValueError with what it expected and what came.
ConditioningBuilder = Callable[[torch.Tensor, Mapping[str, Any], Any], Any]


@dataclasses.dataclass(frozen=True)
class FluxConditioning:
    """FLUX: T5 tokens [B, L, D], CLIP pooled [B, P], and the guidance scale [B] of guidance-distilled
    models (FluxGuidance's `guidance`; None: the model's default)."""

    context: torch.Tensor
    pooled: torch.Tensor
    guidance: torch.Tensor | None = None


@dataclasses.dataclass(frozen=True)
class SD3Conditioning:
    """SD3/SD3.5: the joint text sequence [B, L, 4096] and CLIP-L + G pooled [B, 2048]."""

    context: torch.Tensor
    pooled: torch.Tensor


@dataclasses.dataclass(frozen=True)
class CrossAttentionConditioning:
    """SD1.x/SD2.x: the text encoder's sequence [B, 77k, D] for the UNet's cross-attention."""

    context: torch.Tensor


@dataclasses.dataclass(frozen=True)
class SDXLConditioning:
    """SDXL: the sequence [B, L, 2048], the pooled text [B, 1280] and the size ids [B, 6]
    (height, width, crop top, crop left, target height, target width) that make its `y`."""

    context: torch.Tensor
    pooled: torch.Tensor
    time_ids: torch.Tensor


@dataclasses.dataclass(frozen=True)
class WanConditioning:
    """Wan: the umT5 sequence [B, L, 4096] and, for image-to-video, the CLIP-vision tokens [B, 257, 1280]."""

    context: torch.Tensor
    image_embedding: torch.Tensor | None = None


def _tensors(condition: Any) -> dict[str, torch.Tensor | None]:
    return {field.name: getattr(condition, field.name) for field in dataclasses.fields(condition)}


def batch_size(condition: Any) -> int:
    """The batch of a conditioning object (its first tensor's)."""
    return next(value.shape[0] for value in _tensors(condition).values() if value is not None)


def tiled(condition: Condition, batch: int, device: torch.device | None = None) -> Condition:
    """Every tensor repeated to `batch` as ComfyUI does (2 prompts, 4 latents: 1 2 1 2), on `device`."""
    return dataclasses.replace(condition, **{name: None if value is None else tile_to_batch(value, batch, device)
                                             for name, value in _tensors(condition).items()})


def moved(condition: Condition, device: torch.device, dtype: torch.dtype) -> Condition:
    """The same conditioning with its floating tensors on `device` in `dtype` (ids keep their dtype)."""
    def move(value: torch.Tensor) -> torch.Tensor:
        return value.to(device=device, dtype=dtype if value.is_floating_point() else value.dtype)

    return dataclasses.replace(condition, **{name: None if value is None else move(value)
                                             for name, value in _tensors(condition).items()})


def joinable(conditions: Sequence[Any]) -> bool:
    """Whether these can run as one batch: one type, and every field the same shape past the batch (or None)."""
    first = conditions[0]
    shapes = [{name: None if value is None else value.shape[1:] for name, value in _tensors(item).items()}
              for item in conditions]
    return all(type(item) is type(first) for item in conditions) and all(shape == shapes[0] for shape in shapes)


def joined(conditions: Sequence[Condition]) -> Condition:
    """The conditions concatenated along the batch (they must be `joinable`)."""
    fields = [_tensors(item) for item in conditions]
    return dataclasses.replace(conditions[0], **{
        name: None if fields[0][name] is None else torch.cat([field[name] for field in fields])
        for name in fields[0]})


def tile_to_batch(tensor: torch.Tensor, batch: int, device: torch.device | None = None) -> torch.Tensor:
    """Repeat a conditioning batch to the latent batch, as ComfyUI does (2 prompts, 4 latents: 1 2 1 2)."""
    if tensor.shape[0] != batch:
        repeats = -(-batch // tensor.shape[0])
        tensor = tensor.repeat(repeats, *([1] * (tensor.ndim - 1)))[:batch]
    return tensor if device is None else tensor.to(device)


def sequence_of(where: str, entry: Any) -> tuple[torch.Tensor, Mapping[str, Any]]:
    """A CONDITIONING pair's (hidden [n, tokens, width], extras), or a ValueError naming `where`."""
    if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[1], Mapping)):
        raise ValueError(f"{where} must be a [tensor, dict] pair (the output of CLIPTextEncode), got {entry!r:.80}")
    context, extras = entry
    if not isinstance(context, torch.Tensor) or context.ndim != 3:
        raise ValueError(f"{where} must hold a [batch, tokens, width] tensor, got {describe(context)}")
    return context, extras


def require_width(what: str, tensor: torch.Tensor, width: int | None, setting: str) -> None:
    """Raise ValueError unless `tensor`'s last dimension is the model's `width` (None: not known, unchecked)."""
    if width is not None and tensor.shape[-1] != width:
        raise ValueError(f"{what} is {tensor.shape[-1]} wide but the model expects {width} ({setting}; shape "
                         f"{tuple(tensor.shape)}); was it encoded with this model's text encoder?")


def require_batched(what: str, tensor: Any, batch: int, ndim: int) -> torch.Tensor:
    """`tensor` when it has `ndim` dimensions and the sequence's batch, else a ValueError saying what it needs."""
    if not isinstance(tensor, torch.Tensor) or tensor.ndim != ndim or tensor.shape[0] != batch:
        wanted = ", ".join([str(batch)] + ["..."] * (ndim - 1))
        got = describe(tensor) if tensor is not None else "none"
        raise ValueError(f"{what} must have shape [{wanted}] (the model needs it), got {got}")
    return tensor


def describe(value: Any) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def unpack_conditioning(node: str, name: str, conditioning: Any, model: Any) -> tuple[Any, ...]:
    """Check a CONDITIONING against the loaded model and return its entries as the family's objects."""
    if not isinstance(conditioning, (list, tuple)) or not conditioning:
        raise ValueError(
            f"{node}: {name} must be a non-empty CONDITIONING list (the output of CLIPTextEncode), "
            f"got {conditioning!r:.80}"
        )
    build = model.family.conditioning
    if build is None:
        raise TypeError(f"model family {model.family.name!r} reads no conditioning; it is not a diffusion model")
    config = getattr(model.module, "config", None)
    entries = []
    for index, entry in enumerate(conditioning):
        where = f"{node}: {name}[{index}]"
        context, extras = sequence_of(where, entry)
        try:
            entries.append(build(context, extras, config))
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
    return tuple(entries)
