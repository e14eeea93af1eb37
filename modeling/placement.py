"""Putting a module's weights on the compute device, whole or one block at a time (low-VRAM mode).

The host copy of every weight stays where it is (often a memory-mapped file); placing a module
gives its parameters device copies and unplacing gives them back the host tensors, so moving a
model off the device costs no copy and frees the device memory at once.

A module larger than the device budget is *streamed*: its repeated blocks (the largest
`nn.ModuleList`s, e.g. a transformer's double- and single-stream blocks) are placed by a forward
pre-hook and unplaced by a forward hook, so only the shared layers and one block are on the device
at a time. `DeviceAccount` counts the bytes placed, which is also how the device tier is tested on
a machine without a GPU.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

Undo = Callable[[], None]


@dataclass
class DeviceAccount:
    """Bytes of weights currently placed on the device, and the most there ever were."""

    placed: int = 0
    peak: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, size: int) -> None:
        with self._lock:
            self.placed += size
            self.peak = max(self.peak, self.placed)

    def remove(self, size: int) -> None:
        with self._lock:
            self.placed -= size


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


def module_bytes(module: nn.Module) -> int:
    """Bytes of the module's parameters and buffers, each shared tensor counted once."""
    seen: dict[int, torch.Tensor] = {}
    for tensor in (*module.parameters(), *module.buffers()):
        seen.setdefault(id(tensor), tensor)
    return tensor_bytes(seen.values())


def _own_tensors(module: nn.Module, skip: set[int]) -> list[tuple[nn.Module, str, bool]]:
    """(owner, name, is_parameter) of every parameter and buffer under `module`, except under the
    submodules whose ids are in `skip`."""
    found = []
    visited = set(skip)  # a submodule registered twice (tied layers) is placed once
    stack = [module]
    while stack:
        owner = stack.pop()
        if owner is None or id(owner) in visited:
            continue
        visited.add(id(owner))
        found += [(owner, name, True) for name, value in owner._parameters.items() if value is not None]
        found += [(owner, name, False) for name, value in owner._buffers.items() if value is not None]
        stack.extend(owner._modules.values())
    return found


def place(tensors: list[tuple[nn.Module, str, bool]], device: torch.device, account: DeviceAccount) -> Undo:
    """Give each listed parameter or buffer a copy on `device`; the undo gives the host tensors back."""
    host: list[tuple[nn.Module, str, bool, torch.Tensor]] = []
    size = 0
    for owner, name, is_parameter in tensors:
        value = owner._parameters[name] if is_parameter else owner._buffers[name]
        original = value.data if is_parameter else value
        host.append((owner, name, is_parameter, original))
        moved = original.to(device, non_blocking=True)
        size += tensor_bytes([original])
        if is_parameter:
            value.data = moved
        else:
            owner._buffers[name] = moved
    account.add(size)

    def unplace() -> None:
        for owner, name, is_parameter, original in host:
            if is_parameter:
                owner._parameters[name].data = original
            else:
                owner._buffers[name] = original
        account.remove(size)

    return unplace


def place_whole(module: nn.Module, device: torch.device, account: DeviceAccount) -> Undo:
    """Every weight of `module` on `device` for as long as the undo is not called."""
    return place(_own_tensors(module, set()), device, account)


def repeated_blocks(module: nn.Module) -> list[nn.Module]:
    """The blocks of the module's `nn.ModuleList`s of two or more entries, outermost lists only."""
    blocks: list[nn.Module] = []
    stack = [module]
    while stack:
        current = stack.pop()
        if current is None:
            continue
        if isinstance(current, nn.ModuleList) and len(current) > 1:
            blocks.extend(current)
            continue
        stack.extend(current._modules.values())
    return blocks


@dataclass(frozen=True)
class StreamingPlan:
    """How a module is split for streaming: the blocks, and the bytes that stay on the device."""

    blocks: tuple[nn.Module, ...]
    shared_bytes: int
    largest_block_bytes: int

    @property
    def least_device_bytes(self) -> int:
        """The smallest device budget the module streams in: the shared layers plus its largest block."""
        return self.shared_bytes + self.largest_block_bytes


def streaming_plan(module: nn.Module) -> StreamingPlan:
    blocks = repeated_blocks(module)
    block_ids = {id(block) for block in blocks}
    shared = tensor_bytes(_value(owner, name, is_parameter)
                          for owner, name, is_parameter in _own_tensors(module, block_ids))
    largest = max((module_bytes(block) for block in blocks), default=0)
    return StreamingPlan(tuple(blocks), shared, largest)


def place_streamed(module: nn.Module, plan: StreamingPlan, device: torch.device, account: DeviceAccount) -> Undo:
    """The shared layers on `device` now; each block on `device` only while it runs."""
    block_ids = {id(block) for block in plan.blocks}
    unplace_shared = place(_own_tensors(module, block_ids), device, account)
    in_flight: dict[int, Undo] = {}
    handles = []

    def before(block: nn.Module, args: object) -> None:
        in_flight[id(block)] = place(_own_tensors(block, set()), device, account)

    def after(block: nn.Module, args: object, output: object) -> None:
        in_flight.pop(id(block))()

    for block in plan.blocks:
        handles.append(block.register_forward_pre_hook(before))
        handles.append(block.register_forward_hook(after))

    def unplace() -> None:
        for handle in handles:
            handle.remove()
        for undo in in_flight.values():  # a block interrupted mid-forward (an error inside it)
            undo()
        in_flight.clear()
        unplace_shared()

    return unplace


def _value(owner: nn.Module, name: str, is_parameter: bool) -> torch.Tensor:
    return owner._parameters[name] if is_parameter else owner._buffers[name]
