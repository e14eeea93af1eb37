"""Cross-prompt output cache: policies, and where cached tensors live.

Entries are keyed by a node's Merkle signature (engine/keys.py), so a hit means "same node
type, same literal inputs, same fingerprint, same upstream keys". Three policies decide what
survives a prompt: `classic` keeps what the last prompt used (ComfyUI's default), `lru:N`
keeps the N most recently used entries, `none` keeps nothing.

Independently of the policy, a `MemoryBudget` bounds the bytes of cached tensors: entries
stay on the compute device up to `device_bytes`, the least recently used then move to host
memory, and past `host_bytes` they are dropped (and recomputed when next needed). On a CPU
run the two tiers are one.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

GIB = 1024**3


@dataclass
class CacheEntry:
    """One node's outputs: per output slot, the list of items (ComfyUI list semantics)."""

    outputs: list[list[Any]]
    ui: dict[str, Any] | None = None
    device_bytes: int = 0
    host_bytes: int = 0
    generation: int = 0
    offloaded: bool = False  # moved to host memory by the budget (not produced there)


def map_tensors(value: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Apply `fn` to every tensor inside nested lists, tuples and dicts; other values pass."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, dict):
        return {key: map_tensors(item, fn) for key, item in value.items()}
    if isinstance(value, list):
        return [map_tensors(item, fn) for item in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(map_tensors(item, fn) for item in value)
    return value


def tensor_bytes(value: Any) -> tuple[int, int]:
    """(bytes on an accelerator, bytes in host memory) of the tensors inside `value`."""
    if isinstance(value, list) and all(isinstance(slot, list) and all(isinstance(item, torch.Tensor)
                                                                       for item in slot) for slot in value):
        return _flat_tensor_bytes(value)  # the common shape of node outputs, counted without recursion
    totals = [0, 0]

    def count(tensor: torch.Tensor) -> torch.Tensor:
        totals[0 if tensor.device.type != "cpu" else 1] += tensor.element_size() * tensor.nelement()
        return tensor

    map_tensors(value, count)
    return totals[0], totals[1]


def _flat_tensor_bytes(outputs: list[list[torch.Tensor]]) -> tuple[int, int]:
    device = host = 0
    for slot in outputs:
        for tensor in slot:
            size = tensor.element_size() * tensor.nelement()
            if tensor.device.type == "cpu":
                host += size
            else:
                device += size
    return device, host


@dataclass(frozen=True)
class MemoryBudget:
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    device_bytes: int = 4 * GIB
    host_bytes: int = 8 * GIB


@dataclass(frozen=True)
class CachePolicy:
    """`kind` is "classic", "lru" or "none"; `size` is N for lru."""

    kind: str = "classic"
    size: int = 0

    @classmethod
    def parse(cls, text: str) -> CachePolicy:
        """Parse the `--cache` flag: classic, lru:N or none."""
        text = text.strip().lower()
        if text in ("classic", "none"):
            return cls(text)
        match = re.fullmatch(r"lru:(\d+)", text)
        if match:
            return cls("lru", int(match.group(1)))
        raise ValueError(f"--cache must be classic, lru:N or none; got {text!r}")


class OutputCache:
    """The cache the executor reads and fills; one instance per executor, built in main.py."""

    def __init__(self, policy: CachePolicy | None = None, budget: MemoryBudget | None = None) -> None:
        self.policy = policy or CachePolicy()
        self.budget = budget or MemoryBudget()
        self._entries: OrderedDict[bytes, CacheEntry] = OrderedDict()  # least recently used first
        self._generation = 0
        self._device_total = 0
        self._host_total = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: bytes) -> bool:
        return key in self._entries

    @property
    def device_total(self) -> int:
        return self._device_total

    @property
    def host_total(self) -> int:
        return self._host_total

    def begin_run(self) -> None:
        self._generation += 1

    def get(self, key: bytes) -> CacheEntry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        entry.generation = self._generation
        if entry.offloaded:  # only what the budget moved off comes back; CPU outputs stay on the CPU
            self._move(key, entry, self.budget.device)
            entry.offloaded = False
            self._enforce_budget(protect=key)
        return entry

    def put(self, key: bytes, outputs: list[list[Any]], ui: dict[str, Any] | None) -> None:
        if key in self._entries:
            self._forget(key)
        device_bytes, host_bytes = tensor_bytes(outputs)
        entry = CacheEntry(outputs, ui, device_bytes, host_bytes, self._generation)
        self._entries[key] = entry
        self._device_total += device_bytes
        self._host_total += host_bytes
        self._enforce_budget(protect=key)

    def end_run(self, used_keys: Iterable[bytes]) -> None:
        """Apply the policy once a prompt has finished, whatever its outcome."""
        if self.policy.kind == "none":
            self.clear()
        elif self.policy.kind == "classic":
            keep = set(used_keys)
            for key in [key for key in self._entries if key not in keep]:
                self._forget(key)
        else:
            for key in list(self._entries):
                if len(self._entries) <= self.policy.size or self._entries[key].generation == self._generation:
                    break  # within the bound, or reached what this prompt used (kept, like ComfyUI)
                self._forget(key)

    def clear(self) -> None:
        self._entries.clear()
        self._device_total = self._host_total = 0

    def offload_device_entries(self) -> None:
        """Move every device-resident entry to host memory (after an OOM, or on /free)."""
        for key, entry in list(self._entries.items()):
            if entry.device_bytes:
                self._move(key, entry, torch.device("cpu"))
                entry.offloaded = True
        self._enforce_budget(protect=None)

    def _enforce_budget(self, protect: bytes | None) -> None:
        # Checked first so a put within budget costs O(1): scanning every entry on each put
        # made a 10,000-node run quadratic.
        device_over = self._device_total > self.budget.device_bytes
        if not device_over and self._host_total <= self.budget.host_bytes:
            return
        on_cpu = self.budget.device.type == "cpu"
        if device_over and not on_cpu:
            for key, entry in list(self._entries.items()):
                if self._device_total <= self.budget.device_bytes:
                    break
                if entry.device_bytes and key != protect:
                    self._move(key, entry, torch.device("cpu"))
                    entry.offloaded = True
        for key in list(self._entries):
            if self._host_total <= self.budget.host_bytes:
                break
            if key != protect and self._entries[key].host_bytes:
                self._forget(key)

    def _move(self, key: bytes, entry: CacheEntry, device: torch.device) -> None:
        self._device_total -= entry.device_bytes
        self._host_total -= entry.host_bytes
        entry.outputs = map_tensors(entry.outputs, lambda tensor: tensor.to(device))
        entry.device_bytes, entry.host_bytes = tensor_bytes(entry.outputs)
        self._device_total += entry.device_bytes
        self._host_total += entry.host_bytes

    def _forget(self, key: bytes) -> None:
        entry = self._entries.pop(key)
        self._device_total -= entry.device_bytes
        self._host_total -= entry.host_bytes
