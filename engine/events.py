"""Events the executor emits while it runs a prompt.

The executor reports to a plain callable (`EventSink`) and never touches sockets: the
server maps these to ComfyUI websocket messages (server/ws.py), the command line to a
progress bar. Field names follow ComfyUI's message fields so the mapping stays trivial.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ExecutionStarted:
    prompt_id: str
    timestamp: int  # milliseconds since the epoch


@dataclass(frozen=True)
class NodesCached:
    """Nodes of the prompt whose outputs were served from the cache (sent once per run)."""

    prompt_id: str
    nodes: list[str]


@dataclass(frozen=True)
class NodeStarted:
    prompt_id: str
    node_id: str
    display_node_id: str


@dataclass(frozen=True)
class NodeProgress:
    prompt_id: str
    node_id: str
    display_node_id: str
    value: float
    max: float


@dataclass(frozen=True)
class NodePreview:
    """A preview image for a running node; `image` is a PIL image (encoded by the consumer)."""

    prompt_id: str
    node_id: str
    display_node_id: str
    image: Any


@dataclass(frozen=True)
class NodeFinished:
    """A node finished (or was served from cache); `ui` is what `executed` carries, if any."""

    prompt_id: str
    node_id: str
    display_node_id: str
    ui: dict[str, Any] | None
    cached: bool = False


@dataclass(frozen=True)
class ExecutionFailed:
    """A node raised; fields are ComfyUI's `execution_error` fields."""

    prompt_id: str
    node_id: str
    node_type: str
    executed: list[str]
    exception_message: str
    exception_type: str
    traceback: list[str]
    current_inputs: dict[str, Any] = field(default_factory=dict)
    current_outputs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExecutionInterrupted:
    prompt_id: str
    node_id: str | None
    node_type: str | None
    executed: list[str]


@dataclass(frozen=True)
class ExecutionSucceeded:
    prompt_id: str
    timestamp: int


Event = (
    ExecutionStarted
    | NodesCached
    | NodeStarted
    | NodeProgress
    | NodePreview
    | NodeFinished
    | ExecutionFailed
    | ExecutionInterrupted
    | ExecutionSucceeded
)
EventSink = Callable[[Event], None]


def discard_events(event: Event) -> None:
    """An EventSink for callers that do not watch progress."""
