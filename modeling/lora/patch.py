"""`LoraPatch`: a LoRA file applied to a model for the length of one model-manager scope.

The patch is a value (the file's identity, a strength, the component it changes), so a
`ModelRef` carrying it stays hashable and two prompts with different LoRAs share one resident
base module. The file's tensors come from the manager's cache (`PatchSite.files`), read once. How
it applies depends on the site:

- merged (`site.merge`: the module is placed whole at compute precision): each changed parameter
  gets a NEW tensor `W + strength * scale * up @ down`, computed in float32 and cast back to W's
  dtype; the base tensor is never written, because it may be a memory-mapped file or the device
  copy other scopes will use. The undo hands the original tensors back, bit for bit.
- side branches (a streamed or fp8-stored base): each changed linear layer gets a forward hook
  adding `strength * scale * up(down(x))` to its output, with `down` and `up` on the compute device;
  the base weights are not touched at all. The undo removes the hooks.
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
from modeling.model_refs import PatchFiles, PatchSite, WeightsSource


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

    def match(self, module: nn.Module, files: PatchFiles) -> LoraMatch:
        """What the file changes in `module`; a LoraFormatError when it changes nothing."""
        lora = files.read(self.source, read_lora)
        name = self.label or Path(self.source.path).name
        return lora.match(self.component, parameter_shapes(module), name).require_changes(name)

    def apply(self, module: nn.Module, site: PatchSite) -> Callable[[], None]:
        if self.strength == 0:
            return _nothing  # strength 0 leaves the weights untouched, so outputs stay bit-identical
        by_target: dict[str, list[LowRankChange]] = defaultdict(list)
        for change in self.match(module, site.files).changes:
            by_target[change.target].append(change)
        if site.merge:
            return _merge(module, by_target, self.strength)
        return _side_branches(module, by_target, self.strength, site.device)


def _merge(module: nn.Module, by_target: dict[str, list[LowRankChange]], strength: float) -> Callable[[], None]:
    parameters = dict(module.named_parameters())
    originals: dict[str, torch.Tensor] = {}

    def undo() -> None:
        for target, original in originals.items():
            parameters[target].data = original

    try:
        for target, group in by_target.items():
            parameter = parameters[target]
            originals[target] = parameter.data
            parameter.data = merged(parameter.data, group, strength)
    except BaseException:
        undo()
        raise
    return undo


def _side_branches(module: nn.Module, by_target: dict[str, list[LowRankChange]], strength: float,
                   device: torch.device) -> Callable[[], None]:
    handles = []

    def undo() -> None:
        for handle in handles:
            handle.remove()

    try:
        for target, group in by_target.items():
            owner_name, _, parameter = target.rpartition(".")
            layer = module.get_submodule(owner_name)
            if not isinstance(layer, nn.Linear) or parameter != "weight":
                raise LoraFormatError(
                    f"the LoRA changes {target} ({type(layer).__name__}), which can only be merged into the weights; "
                    f"this model is streamed or stored in fp8, where LoRAs apply as side branches on linear layers")
            handles.append(layer.register_forward_hook(_side_branch(group, strength, device)))
    except BaseException:
        undo()
        raise
    return undo


def _side_branch(changes: list[LowRankChange], strength: float, device: torch.device) -> Callable[..., torch.Tensor]:
    """A forward hook adding each change's `strength * scale * up(down(x))` to a linear layer's output rows."""
    factors = [(change.down.to(device=device, dtype=torch.float32), change.up.to(device=device, dtype=torch.float32),
                strength * change.scale, change.rows) for change in changes]

    def hook(layer: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        x = inputs[0].to(torch.float32)
        result = output.to(torch.float32)
        for down, up, scale, rows in factors:
            delta = (x @ down.T @ up.T) * scale
            if rows is None:
                result = result + delta
            else:
                result = torch.cat([result[..., :rows[0]], result[..., rows[0]:rows[1]] + delta,
                                    result[..., rows[1]:]], dim=-1)
        return result.to(output.dtype)

    return hook


@dataclass(frozen=True, eq=False)
class LoraFile:
    """A LoRA file's tensors and the PEFT settings in its header."""

    state: dict[str, torch.Tensor]
    adapter: dict[str, Any]

    @property
    def nbytes(self) -> int:
        """Bytes of its tensors, what it costs the host budget while the manager keeps it."""
        return sum(tensor.nbytes for tensor in self.state.values())

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
