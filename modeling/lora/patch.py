"""`LoraPatch`: a LoRA file merged into a model's weights for the length of one model-manager scope.

The patch is a value (the file's identity, a strength, the component it changes), so a
`ModelRef` carrying it stays hashable and two prompts with different LoRAs share one resident
base module. `apply` reads the file, computes `W + strength * scale * up @ down` in float32 and
gives each changed parameter that NEW tensor, cast back to W's dtype; the base tensor is never
written, because it may be a memory-mapped file or the device copy other scopes will use. The
undo hands the original tensors back, so the base weights come back bit for bit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modeling.families import Component
from modeling.files import load_state_dict, read_metadata
from modeling.lora.formats import (
    LoraFormatError,
    LoraMatch,
    LowRankChange,
    adapter_settings,
    match_lora,
    parameter_shapes,
)
from modeling.model_refs import WeightsSource


def _nothing() -> None:
    """The undo of a patch that changed nothing."""


@dataclass(frozen=True)
class LoraPatch:
    """The LoRA at `source`, at `strength`, on the `component` a reference stands for."""

    source: WeightsSource
    strength: float
    component: Component
    # The name the loader node was given, for messages (file paths of the server are not shown).
    label: str = field(default="", compare=False)

    def match(self, module: nn.Module) -> LoraMatch:
        """What the file changes in `module`; a LoraFormatError when it changes nothing."""
        lora = read_lora(self.source.path)
        name = self.label or Path(self.source.path).name
        return lora.match(self.component, parameter_shapes(module), name).require_changes(name)

    def apply(self, module: nn.Module) -> Callable[[], None]:
        if self.strength == 0:
            return _nothing  # strength 0 leaves the weights untouched, so outputs stay bit-identical
        changes = self.match(module).changes
        parameters = dict(module.named_parameters())
        by_target: dict[str, list[LowRankChange]] = defaultdict(list)
        for change in changes:
            by_target[change.target].append(change)
        originals: dict[str, torch.Tensor] = {}

        def undo() -> None:
            for target, original in originals.items():
                parameters[target].data = original

        try:
            for target, group in by_target.items():
                parameter = parameters[target]
                originals[target] = parameter.data
                parameter.data = merged(parameter.data, group, self.strength)
        except BaseException:
            undo()
            raise
        return undo


@dataclass(frozen=True, eq=False)
class LoraFile:
    """A LoRA file's tensors and the PEFT settings in its header."""

    state: dict[str, torch.Tensor]
    adapter: dict[str, Any]

    def match(self, component: Component, shapes: dict[str, tuple[int, ...]], source: str) -> LoraMatch:
        return match_lora(self.state, component, shapes, source, self.adapter)


def read_lora(path: Path | str) -> LoraFile:
    """The LoRA at `path` (safetensors only: pickles are refused); a ValueError naming the file otherwise."""
    state = load_state_dict(path)
    try:
        adapter = adapter_settings(read_metadata(Path(path)))
    except LoraFormatError as error:
        raise LoraFormatError(f"{path}: {error}") from None
    return LoraFile(state, adapter)


def merged(weight: torch.Tensor, changes: list[LowRankChange], strength: float) -> torch.Tensor:
    """A new tensor: `weight` plus `strength * scale * up @ down` of each change, summed in float32."""
    total = weight.to(dtype=torch.float32, copy=True)
    for change in changes:
        down = change.down.to(device=weight.device, dtype=torch.float32)
        up = change.up.to(device=weight.device, dtype=torch.float32)
        delta = (up @ down).mul_(strength * change.scale)
        rows = total if change.rows is None else total[change.rows[0]:change.rows[1]]
        rows += delta.reshape(rows.shape)
    return total.to(weight.dtype)
