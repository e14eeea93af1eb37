"""What a running node may touch: its identity, folders, device, models, progress and interrupts.

Nodes receive a `NodeContext` when their first parameter is annotated with it. It is the
only route to progress reports, previews, the interrupt flag and loaded models (`ctx.models`,
the model manager the composition root built); nodes never reach into the executor or the
server. The engine knows the manager only by the `ModelScopes` protocol: it imports no model code.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from engine.paths import Folders


class Interrupted(Exception):
    """Raised at a progress point after the running prompt was interrupted."""


class InterruptFlag:
    """A thread-safe flag the server sets and the running prompt polls."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()


ProgressReporter = Callable[[float, float, Any], None]


class ModelScopes(Protocol):
    """The model manager as nodes and the server see it (modeling/manager.py implements it)."""

    def use(self, ref: Any) -> AbstractContextManager[Any]:
        """The module a model reference stands for, ready on the compute device, for a `with` block."""
        ...

    def unload_all(self) -> None: ...

    def stats(self) -> dict[str, Any]:
        """Budgets and resident models, for /system_stats."""
        ...


class NoModels:
    """The model scopes of a context built without a model manager (stub-node tests, validation)."""

    def use(self, ref: Any) -> AbstractContextManager[Any]:
        raise RuntimeError("this run has no model manager: build the executor with models=ModelManager(...)")

    def unload_all(self) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {"loaded": []}


def _ignore_progress(value: float, total: float, preview: Any) -> None:
    """Progress reporter for contexts outside a run (validation, fingerprints)."""


@dataclass
class NodeContext:
    node_id: str
    display_node_id: str
    prompt_id: str
    folders: Folders
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    prompt: Mapping[str, Any] = field(default_factory=dict)
    extra_pnginfo: Mapping[str, Any] | None = None
    interrupt: InterruptFlag = field(default_factory=InterruptFlag)
    report: ProgressReporter = _ignore_progress
    models: ModelScopes = field(default_factory=NoModels)

    def check_interrupted(self) -> None:
        if self.interrupt.is_set():
            raise Interrupted(f"prompt {self.prompt_id} was interrupted at node {self.node_id}")

    def progress(self, value: float, total: float, preview: Any = None) -> None:
        """Report progress (and optionally a PIL preview image); also an interrupt point."""
        self.check_interrupted()
        self.report(value, total, preview)


# The context of the node running on this thread or task, for ComfyUI-compatibility shims
# (e.g. `comfy.utils.ProgressBar`) that cannot receive a context argument. The executor sets
# it around every node call; Flowmill's own nodes take `ctx` as a parameter instead.
CURRENT_NODE_CONTEXT: ContextVar[NodeContext | None] = ContextVar("flowmill_node_context", default=None)
