"""The model manager: owns every loaded module, decides where it lives, and hands it out in scopes.

Nodes never hold modules; they hold `ModelRef`s (modeling/model_refs.py) and ask for the module
for as long as they need it:

    with ctx.models.use(ref) as model:
        ...  # model.module is on the compute device, with ref's patches applied

Inside `use` the manager

- loads the weights on first use (memory-mapped safetensors, one copy) and keeps them resident on
  the host across prompts, least recently used out beyond the host budget (`--ram-budget`);
- places the module on the compute device within the device budget (`--vram-budget`), dropping
  other models from the device first, or streams it block by block when it alone is larger than
  the budget (modeling/placement.py);
- applies the reference's patches and undoes them when the scope ends, also on error or interrupt:
  merged into the weights when the module is placed whole at compute precision, as side branches
  when it is streamed or stored in fp8 (`PatchSite`); the files patches read (LoRAs) stay resident
  in the host budget like models, so a re-run reads no LoRA again either.

One scope at a time per resident module: a second prompt that wants the same weights (with other
patches) waits for the first scope to end instead of seeing its patches. A scope opened again on the
same thread inside another (a helper called by a node that already holds the model) gets the same
model when it asks for the same patches and sampling, and an error otherwise. Built once by the
composition root; nothing here is module-level state.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from modeling.model_refs import ModelRef, PatchSite, WeightsKey, WeightsSource
from modeling.placement import DeviceAccount, module_bytes, place_streamed, place_whole, streaming_plan
from modeling.residency import Residency


class LoadedModel(Protocol):
    """What the manager holds: a frozen wrapper (DiffusionModel, TextEncoder, Vae) around a module."""

    module: nn.Module
    device: torch.device


Loader = Callable[[ModelRef, torch.device], Any]


class DeviceBudgetError(RuntimeError):
    """A model cannot run even streamed: its shared layers and largest block exceed the device budget."""


@dataclass
class _Resident:
    key: WeightsKey
    model: Any  # a LoadedModel on the host
    size: int
    label: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0
    # The scope in progress: (thread id, reference, model handed out), for nested use on one thread.
    active: tuple[int, ModelRef, Any] | None = None
    on_device: Callable[[], None] | None = None  # undoes the whole-module placement
    last_used: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Budgets:
    """Bytes of weights the manager may keep on the host and on the compute device."""

    ram: int
    vram: int

    @classmethod
    def for_machine(cls, device: torch.device, ram: int | None = None, vram: int | None = None) -> Budgets:
        """The given budgets, else defaults from the machine: half the RAM for resident models; on a
        GPU its memory less 1.5 GiB for activations; on the CPU the device tier is the host tier."""
        import psutil

        ram = ram if ram is not None else psutil.virtual_memory().total // 2
        if vram is None:
            if device.type == "cuda":
                vram = max(torch.cuda.get_device_properties(device).total_memory - 3 * 2**29, 2**30)
            else:
                vram = ram
        return cls(ram, vram)


class ModelManager:
    """Resident models, their placement and their patch scopes (see the module docstring)."""

    def __init__(self, device: torch.device, budgets: Budgets, load: Loader) -> None:
        self.device = device
        self.budgets = budgets
        self._load = load
        self._lock = threading.Lock()
        self._residents: dict[WeightsKey, _Resident] = {}
        self._host = Residency(budgets.ram)
        self._device_tier = Residency(budgets.vram)
        self.account = DeviceAccount()
        # Model loads from disk, in all and per weights, and reads of patch files: what tests read to prove a
        # re-run read nothing.
        self.loads = 0
        self.loads_by_key: dict[WeightsKey, int] = {}
        self.patch_file_reads: dict[WeightsSource, int] = {}
        # Files patches read, keyed ("patch file", source) in the host tier beside the models.
        self._patch_files: dict[tuple[str, WeightsSource], Any] = {}

    @contextmanager
    def use(self, ref: ModelRef) -> Iterator[Any]:
        """The model `ref` stands for, on the compute device with `ref`'s patches, for the `with` block."""
        resident = self._resident(ref)
        try:
            active = resident.active
            if active is not None and active[0] == threading.get_ident():
                if active[1] != ref:
                    raise RuntimeError(f"{resident.label}: already in use on this thread with other patches or "
                                       f"sampling; a scope cannot nest inside another on the same weights")
                yield active[2]
                return
            with resident.lock, ExitStack() as undo:
                model, streamed = self._placed(resident, undo)
                site = PatchSite(model.device, merge=not streamed and ref.storage == "default", files=self)
                for patch in ref.patches:
                    undo.callback(patch.apply(model.module, site))
                if ref.sampling is not None:
                    model = model.with_sampling(ref.sampling)
                resident.active = (threading.get_ident(), ref, model)
                try:
                    yield model
                finally:
                    resident.active = None
        finally:
            with self._lock:
                resident.users -= 1
                resident.last_used = time.time()

    def read(self, source: WeightsSource, reader: Callable[[str], Any]) -> Any:
        """A patch's file (a LoRA's tensors): read on first use and kept in the host budget like a model, least
        recently used out (`PatchFiles`)."""
        key = ("patch file", source)
        with self._lock:
            if key in self._patch_files:
                self._host.touch(key)
                return self._patch_files[key]
        value = reader(source.path)
        size = getattr(value, "nbytes", 0)
        with self._lock:
            self.patch_file_reads[source] = self.patch_file_reads.get(source, 0) + 1
            if key not in self._patch_files:
                for victim in self._host.make_room(size, self._in_use()):
                    self._drop(victim)
                self._patch_files[key] = value
                self._host.add(key, size)
            return self._patch_files[key]

    def unload_all(self) -> None:
        """Drop every model not in use (`/free` with `unload_models`)."""
        with self._lock:
            for key in [key for key, resident in self._residents.items() if resident.users == 0]:
                self._drop(key)
            for key in list(self._patch_files):
                self._drop(key)

    def stats(self) -> dict[str, Any]:
        """The budgets, and what is loaded, where and how big, most recently used first (`/system_stats`)."""
        with self._lock:
            residents = sorted(self._residents.values(), key=lambda item: item.last_used, reverse=True)
            loaded = [{"name": resident.label, "component": resident.key.component,
                       "storage": resident.key.storage, "bytes": resident.size,
                       "device": str(self.device) if resident.on_device is not None else "cpu",
                       "in_use": resident.users > 0} for resident in residents]
            loaded += [{"name": Path(source.path).name, "component": "patch file", "storage": "default",
                        "bytes": getattr(value, "nbytes", 0), "device": "cpu", "in_use": False}
                       for (_, source), value in self._patch_files.items()]
            return {"device": str(self.device), "ram_budget": self.budgets.ram, "vram_budget": self.budgets.vram,
                    "ram_used": self._host.used, "vram_used": self._device_tier.used, "loaded": loaded}

    @property
    def host_bytes(self) -> int:
        return self._host.used

    @property
    def device_bytes(self) -> int:
        return self._device_tier.used

    # -- residency --------------------------------------------------------------------------

    def _resident(self, ref: ModelRef) -> _Resident:
        """The resident entry for `ref`'s weights, loaded now if needed, marked as in use."""
        key = ref.weights_key
        with self._lock:
            resident = self._residents.get(key)
            if resident is not None:
                resident.users += 1
                self._host.touch(key)
                return resident
        # Loading runs outside the manager's lock (it takes seconds); two first uses of the same
        # weights at once would both load, and the second result is dropped.
        model = self._load(ref, self.device)
        size = module_bytes(model.module)
        with self._lock:
            self.loads += 1
            self.loads_by_key[key] = self.loads_by_key.get(key, 0) + 1
            resident = self._residents.get(key)
            if resident is None:
                for victim in self._host.make_room(size, self._in_use()):
                    self._drop(victim)
                resident = _Resident(key, model, size, ref.label or key.source.path)
                self._residents[key] = resident
                self._host.add(key, size)
            resident.users += 1
            return resident

    def _placed(self, resident: _Resident, undo: ExitStack) -> tuple[Any, bool]:
        """The resident's model on the compute device: whole if it fits the device budget, else streamed
        (the flag)."""
        model = resident.model
        if resident.key.compute == "cpu":
            return model, False  # asked to compute on the CPU, where it was loaded
        with self._lock:
            if resident.on_device is not None:
                self._device_tier.touch(resident.key)
                return dataclasses.replace(model, device=self.device), False
            if resident.size <= self.budgets.vram:
                for victim in self._device_tier.make_room(resident.size, self._in_use() - {resident.key}):
                    self._unplace(self._residents[victim])
                if self._device_tier.used + resident.size <= self.budgets.vram:
                    resident.on_device = place_whole(model.module, self.device, self.account)
                    self._device_tier.add(resident.key, resident.size)
                    return dataclasses.replace(model, device=self.device), False
            room = self.budgets.vram - self._device_tier.used
        plan = streaming_plan(model.module)
        if not plan.blocks or plan.least_device_bytes > room:
            raise DeviceBudgetError(
                f"{resident.label}: needs at least {_gib(plan.least_device_bytes if plan.blocks else resident.size)} "
                f"of device memory to run (its shared layers and largest block), and {_gib(room)} of the "
                f"{_gib(self.budgets.vram)} device budget (--vram-budget) is free"
            )
        undo.callback(place_streamed(model.module, plan, self.device, self.account))
        return dataclasses.replace(model, device=self.device), True

    def _in_use(self) -> set[WeightsKey]:
        return {key for key, resident in self._residents.items() if resident.users > 0}

    def _unplace(self, resident: _Resident) -> None:
        if resident.on_device is not None:
            resident.on_device()
            resident.on_device = None
            self._device_tier.remove(resident.key)

    def _drop(self, key: Any) -> None:
        if key in self._patch_files:
            del self._patch_files[key]
            self._host.remove(key)
            return
        resident = self._residents.pop(key)
        self._unplace(resident)
        self._host.remove(key)


def _gib(size: int) -> str:
    return f"{size / 2**30:.2f} GiB"


def build_model_manager(device: torch.device, ram_budget: int | None = None,
                        vram_budget: int | None = None) -> ModelManager:
    """The manager the composition root builds: budgets from the flags or the machine, loading from
    local files (modeling/reference_loading.py, imported on first load: it pulls in diffusers)."""

    def load(ref: ModelRef, compute_device: torch.device) -> Any:
        from modeling.reference_loading import load_reference

        return load_reference(ref, compute_device)

    return ModelManager(device, Budgets.for_machine(device, ram_budget, vram_budget), load)
