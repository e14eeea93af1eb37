"""Model references: what loader nodes output instead of modules.

A `ModelRef` names weights (the file or folder, with the fingerprint of its bytes), which part of
them (diffusion model, VAE or text encoder), how they are stored in memory, and the patches and
sampling settings that apply when the model is used. It is immutable and hashable, so the
executor can cache it and key on it; the module it stands for lives in the `ModelManager`
(modeling/manager.py), which loads it on first use and keeps it resident across prompts.

Two references that differ only in patches or sampling share one resident module: `weights_key`
is what the manager keys on. Patches are values (see `Patch`); adding one makes a new reference
and never touches a module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from modeling.families import Component
from sampling.contract import NoiseSchedule

Undo = Callable[[], None]


class PatchFiles(Protocol):
    """The manager's cache of files patches read (LoRAs): `read(source, reader)` is `reader(source.path)`
    the first time a source is asked for, the kept result after, so a re-run reads nothing again."""

    def read(self, source: WeightsSource, reader: Callable[[str], Any]) -> Any: ...


@dataclass(frozen=True, eq=False)
class PatchSite:
    """What a patch needs to know about the module it changes in this scope.

    `merge` is False when the base weights must stay as they are: the module is streamed to the device
    block by block (a merged copy of every changed weight would double it on the host), or its weights
    are stored below compute precision (merging into fp8 bytes would lose the change). Patches then add
    side branches instead of merged weights.
    """

    device: torch.device
    merge: bool
    files: PatchFiles


@runtime_checkable
class Patch(Protocol):
    """A change to a loaded module that exists only inside a `ModelManager.use` scope.

    Implementations are frozen dataclasses (hashable, comparable), so a reference with patches
    still makes a meaningful cache key. `apply` changes `module` and returns the function that
    undoes exactly that change; the manager calls it when the scope ends, also on error.
    """

    def apply(self, module: nn.Module, site: PatchSite) -> Undo: ...


@dataclass(frozen=True)
class WeightsSource:
    """The bytes behind a reference: a resolved path and the sizes and times of its files."""

    path: str
    fingerprint: str


@dataclass(frozen=True)
class WeightsKey:
    """What identifies one resident module: the same weights stored the same way."""

    source: WeightsSource
    component: Component
    storage: str
    variant: str
    compute: str


@dataclass(frozen=True)
class ModelRef:
    """An immutable, hashable handle on a model; `ModelManager.use(ref)` gives the module."""

    source: WeightsSource
    component: Component
    # The architecture detected from the file's header (a row of modeling/families.py).
    family: str = ""
    # How the weights are held in memory: "default" (the file's precision, float32 on the CPU) or
    # one of UNETLoader's weight_dtype options.
    storage: str = "default"
    # Which of several parts of one file (a text encoder kind, e.g. "clip"); "" when there is one.
    variant: str = ""
    # Where it computes: "default" (the compute device) or "cpu" (CLIPLoader's device option).
    compute: str = "default"
    patches: tuple[Patch, ...] = ()
    # The noise schedule set by ModelSamplingFlux / ModelSamplingSD3 (flow models) or ModelSamplingDiscrete
    # (VP models); None keeps the model's own.
    sampling: NoiseSchedule | None = None
    # A name for messages and /system_stats (the file name the loader node was given).
    label: str = field(default="", compare=False)

    @property
    def weights_key(self) -> WeightsKey:
        return WeightsKey(self.source, self.component, self.storage, self.variant, self.compute)

    def patched(self, *patches: Patch) -> ModelRef:
        """The same model with `patches` applied after the ones it already has."""
        return replace(self, patches=self.patches + tuple(patches))

    def with_sampling(self, sampling: NoiseSchedule) -> ModelRef:
        return replace(self, sampling=sampling)


# The socket and the loader nodes that output each component, for error messages.
_OUTPUTS: Mapping[str, tuple[str, str]] = MappingProxyType({
    "diffusion_model": ("MODEL", "CheckpointLoaderSimple, UNETLoader"),
    "vae": ("VAE", "CheckpointLoaderSimple, VAELoader"),
    "text_encoder": ("CLIP", "CheckpointLoaderSimple, CLIPLoader"),
})


def require_reference(node: str, name: str, value: Any, component: Component) -> ModelRef:
    """`value` when it is a reference to a `component`, else a ValueError naming node and input."""
    if isinstance(value, ModelRef) and value.component == component:
        return value
    socket, loaders = _OUTPUTS[component]
    got = f"a reference to a {value.component.replace('_', ' ')}" if isinstance(value, ModelRef) \
        else type(value).__name__
    raise ValueError(f"{node}: {name} must be a {socket} from a loader node ({loaders}), got {got}")


def require_model(node: str, name: str, value: Any) -> ModelRef:
    """`value` when it is a MODEL (a diffusion model reference), else a ValueError naming node and input."""
    return require_reference(node, name, value, "diffusion_model")
