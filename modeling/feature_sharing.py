"""RF-Edit's feature sharing on diffusers FLUX transformers: attention processors and a feature bank.

RF-Edit (sampling/rf_edit.py) stores the attention value tensors of chosen single-stream blocks
while inverting and swaps them in while denoising. Here that is done the way diffusers intends a
transformer to be changed, by attention processors, with all state in explicit objects:

- `FeatureBank` holds the stored tensors by `FeatureKey(step, stage, block)`, on the CPU or on the
  model's device, and remembers which keys were injected;
- `ValueSharing` is the `FeatureSharing` the editor drives: its `recording` / `injecting` scopes
  set the key of the evaluation in flight, and each processor asks it to exchange its value;
- `ValueSharingProcessor` is FLUX's single-stream attention with that exchange between the value
  projection and the attention;
- `ValueSharingPatch` is the same installation as a patch value (modeling/model_refs.py `Patch`):
  RF-Edit asks the model manager for `ref.patched(ValueSharingPatch(...))`, so the processors exist
  only inside that `use()` scope, while no other scope holds the model, and are undone after it;
- `shared_value_features` installs the processors on the chosen blocks for the length of a `with`
  block and puts the transformer's own processors back afterwards, even on error (for callers that
  hold a module outside the manager: tests and benchmarks).

Nothing is threaded through `forward`'s arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.embeddings import apply_rotary_emb
from torch import Tensor, nn

from sampling.rf_edit import Stage

# RF-Edit's FLUX choice: single-stream blocks with index > 19, i.e. 20-37 of FLUX-dev's 38.
PAPER_FIRST_BLOCK = 20
PAPER_BLOCK_COUNT = 38


@dataclass(frozen=True)
class FeatureKey:
    """One stored tensor: the schedule interval (denoising order), RF-Solver's stage, the single block."""

    step: int
    stage: Stage
    block: int


class FeatureBank:
    """Attention value tensors stored during inversion, by key, on `device`.

    The CPU default keeps FLUX-sized features (one tensor per block, step and stage) out of GPU
    memory, as the reference does; the model's device avoids the copies when memory allows.
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self._stored: dict[FeatureKey, Tensor] = {}
        self._injected: set[FeatureKey] = set()

    def store(self, key: FeatureKey, value: Tensor) -> None:
        if key in self._stored:
            raise ValueError(f"RF-Edit: a feature for {key} is already stored; each evaluation stores once")
        self._stored[key] = value.detach().to(self.device, copy=True)

    def take(self, key: FeatureKey, like: Tensor) -> Tensor:
        """The stored twin of `like` ([B, tokens, heads, dim]) on its device and dtype.

        A batch that is a multiple of the stored one (the target pass with CFG doubles the batch)
        gets the stored batch repeated, so both halves see the source's values.
        """
        stored = self._stored.get(key)
        if stored is None:
            raise ValueError(f"RF-Edit: no stored feature for {key}; inversion must run with the same schedule, "
                             f"inject and blocks as denoising")
        if stored.shape[1:] != like.shape[1:] or like.shape[0] % stored.shape[0]:
            raise ValueError(f"RF-Edit: the stored feature for {key} has shape {tuple(stored.shape)} but the "
                             f"denoising pass has {tuple(like.shape)}; use the same image size for both")
        self._injected.add(key)
        value = stored.to(like.device, like.dtype)
        repeats = like.shape[0] // stored.shape[0]
        return value.repeat(repeats, 1, 1, 1) if repeats > 1 else value

    def stored_shape(self, key: FeatureKey) -> tuple[int, ...]:
        return tuple(self._stored[key].shape)

    @property
    def stored_keys(self) -> frozenset[FeatureKey]:
        return frozenset(self._stored)

    @property
    def injected_keys(self) -> frozenset[FeatureKey]:
        return frozenset(self._injected)

    def nbytes(self) -> int:
        return sum(value.numel() * value.element_size() for value in self._stored.values())


class _Mode(Enum):
    PASS = "pass"
    RECORD = "record"
    INJECT = "inject"


class ValueSharing:
    """The `FeatureSharing` of sampling/rf_edit.py for a FeatureBank: which evaluation is in flight."""

    def __init__(self, bank: FeatureBank) -> None:
        self.bank = bank
        self._mode = _Mode.PASS
        self._step = -1
        self._stage = Stage.MAIN

    @contextmanager
    def recording(self, step: int, stage: Stage) -> Iterator[None]:
        with self._scope(_Mode.RECORD, step, stage):
            yield

    @contextmanager
    def injecting(self, step: int, stage: Stage) -> Iterator[None]:
        with self._scope(_Mode.INJECT, step, stage):
            yield

    @contextmanager
    def _scope(self, mode: _Mode, step: int, stage: Stage) -> Iterator[None]:
        if self._mode is not _Mode.PASS:
            raise RuntimeError("RF-Edit: feature-sharing scopes do not nest")
        self._mode, self._step, self._stage = mode, step, stage
        try:
            yield
        finally:
            self._mode = _Mode.PASS

    def exchange(self, block: int, value: Tensor) -> Tensor:
        """Called by a processor with its value tensor: stored, swapped for the stored twin, or passed on."""
        if self._mode is _Mode.PASS:
            return value
        key = FeatureKey(self._step, self._stage, block)
        if self._mode is _Mode.RECORD:
            self.bank.store(key, value)
            return value
        return self.bank.take(key, value)


class ValueSharingProcessor:
    """FLUX single-stream attention (diffusers' FluxAttnProcessor for `pre_only` blocks) with a value exchange."""

    def __init__(self, block: int, sharing: ValueSharing) -> None:
        self.block = block
        self.sharing = sharing

    def __call__(
        self,
        attn: nn.Module,
        hidden_states: Tensor,
        encoder_hidden_states: Tensor | None = None,
        attention_mask: Tensor | None = None,
        image_rotary_emb: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        if encoder_hidden_states is not None:
            raise ValueError("RF-Edit shares features of single-stream blocks only (no separate text stream)")
        if getattr(attn, "fused_projections", False):
            query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        else:
            query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        query = attn.norm_q(query.unflatten(-1, (-1, attn.head_dim)))
        key = attn.norm_k(key.unflatten(-1, (-1, attn.head_dim)))
        value = self.sharing.exchange(self.block, value.unflatten(-1, (-1, attn.head_dim)))
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
            key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)
        attended = dispatch_attention_fn(query, key, value, attn_mask=attention_mask)
        return attended.flatten(2, 3).to(query.dtype)


def single_blocks(transformer: nn.Module) -> nn.ModuleList:
    """The transformer's single-stream blocks; a model without them cannot share RF-Edit's features."""
    blocks = getattr(transformer, "single_transformer_blocks", None)
    if not isinstance(blocks, nn.ModuleList) or not len(blocks):
        raise ValueError(f"RF-Edit's feature sharing needs a FLUX-style transformer with single-stream blocks; "
                         f"{type(transformer).__name__} has none")
    return blocks


def default_blocks(count: int) -> tuple[int, ...]:
    """The paper's FLUX choice (blocks 20-37 of 38) scaled to `count` single blocks: the same upper share."""
    first = min(count - 1, round(PAPER_FIRST_BLOCK * count / PAPER_BLOCK_COUNT))
    return tuple(range(first, count))


def parse_blocks(text: str, count: int) -> tuple[int, ...]:
    """Block indices from "auto", "none", or a list such as "20-37" or "2, 3" (0-based, of `count` blocks)."""
    spec = text.strip().lower()
    if spec == "auto":
        return default_blocks(count)
    if spec in ("", "none"):
        return ()
    chosen: set[int] = set()
    for part in spec.split(","):
        piece = part.strip()
        low_text, dash, high_text = piece.partition("-")
        try:
            low, high = int(low_text), int(high_text) if dash else int(low_text)
        except ValueError:
            raise ValueError(f"blocks: cannot read {piece!r}; write 'auto', 'none' or indices such as '2, 3' "
                             f"or '20-37'") from None
        if not 0 <= low <= high < count:
            raise ValueError(f"blocks: {piece!r} is not a range within this model's single blocks 0-{count - 1}")
        chosen.update(range(low, high + 1))
    return tuple(sorted(chosen))


@dataclass(frozen=True, eq=False)
class ValueSharingPatch:
    """RF-Edit's value-sharing processors on `blocks` of a FLUX transformer, as a scoped patch.

    Compared by identity: each edit shares its own `ValueSharing` (and bank), so two edits are never
    the same patch.
    """

    blocks: tuple[int, ...]
    sharing: ValueSharing

    def apply(self, module: nn.Module, site: object = None) -> Callable[[], None]:
        """Swap the processors (the `PatchSite` does not matter: no weight changes)."""
        available = single_blocks(module)
        originals = {index: available[index].attn.processor for index in self.blocks}
        for index in self.blocks:
            available[index].attn.set_processor(ValueSharingProcessor(index, self.sharing))

        def undo() -> None:
            for index, processor in originals.items():
                available[index].attn.set_processor(processor)

        return undo


@contextmanager
def shared_value_features(transformer: nn.Module, blocks: Sequence[int], sharing: ValueSharing) -> Iterator[None]:
    """Run the `with` body with ValueSharingProcessors on the chosen single blocks; restore the originals after."""
    undo = ValueSharingPatch(tuple(blocks), sharing).apply(transformer)
    try:
        yield
    finally:
        undo()
