"""The state of one run and what a run reports back: requests, results, failures.

`Run` is created per prompt by the executor and discarded when the prompt ends; nothing in
it outlives the run. The functions here turn a finished or failed run into a `RunResult`
and its terminal event, and splice an expansion's subgraph into the run.
"""

from __future__ import annotations

import asyncio
import os
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.context import InterruptFlag
from engine.events import EventSink, ExecutionFailed, ExecutionInterrupted
from engine.node_call import describe_value
from engine.registry import NodeRegistry
from engine.scheduler import Schedule
from engine.wire import is_link


@dataclass
class RunRequest:
    """A validated prompt to run: `prompt` is the normalised API graph, `outputs` the nodes to produce."""

    prompt_id: str
    prompt: dict[str, dict[str, Any]]
    outputs: list[str]
    extra_data: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    status: Literal["success", "error", "interrupted"]
    outputs: dict[str, dict[str, Any]]  # node id -> ui dict, as in history "outputs"
    meta: dict[str, dict[str, Any]]
    executed: list[str]
    failure: ExecutionFailed | ExecutionInterrupted | None = None
    values: dict[str, list[list[Any]]] = field(default_factory=dict, repr=False)  # every node's outputs


class DynamicPrompt:
    """The prompt as it grows through expansion; ComfyUI's DYNPROMPT hidden input."""

    def __init__(self, nodes: dict[str, dict[str, Any]], original: dict[str, dict[str, Any]]) -> None:
        self._nodes = nodes
        self._original = original

    def get_node(self, node_id: str) -> dict[str, Any]:
        if node_id not in self._nodes:
            raise KeyError(f"node {node_id!r} is not in the prompt")
        return self._nodes[node_id]

    def has_node(self, node_id: str) -> bool:
        return node_id in self._nodes

    def get_original_prompt(self) -> dict[str, dict[str, Any]]:
        return self._original


class NodeFailure(Exception):
    """Wraps an exception raised by (or on behalf of) a node, with the node it came from."""

    def __init__(self, node_id: str, error: BaseException, inputs: Mapping[str, Any] | None = None) -> None:
        super().__init__(str(error))
        self.node_id = node_id
        self.error = error
        self.inputs = dict(inputs or {})


@dataclass
class Run:
    """The state of one run; discarded when the run ends."""

    request: RunRequest
    sink: EventSink
    interrupt: InterruptFlag
    nodes: dict[str, dict[str, Any]]
    schedule: Schedule
    salt: bytes = field(default_factory=lambda: os.urandom(16))
    display: dict[str, str] = field(default_factory=dict)
    parent: dict[str, str] = field(default_factory=dict)
    keys: dict[str, bytes] = field(default_factory=dict)
    values: dict[str, list[list[Any]]] = field(default_factory=dict)
    ui: dict[str, dict[str, Any]] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    started: set[str] = field(default_factory=set)
    expanded: dict[str, list[Any]] = field(default_factory=dict)
    tasks: dict[asyncio.Task, str] = field(default_factory=dict)

    @property
    def prompt_id(self) -> str:
        return self.request.prompt_id


def history_outputs(run: Run) -> dict[str, dict[str, Any]]:
    """The ui of every requested node that has one (history "outputs")."""
    return {node_id: ui for node_id, ui in run.ui.items() if node_id in run.schedule.requested}


def node_meta(run: Run, node_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    return {node_id: {"node_id": node_id, "display_node": run.display.get(node_id, node_id),
                      "parent_node": run.parent.get(node_id), "real_node_id": node_id}
            for node_id in node_ids}


def outcome(run: Run, status: Literal["success", "error", "interrupted"],
            failure: ExecutionFailed | ExecutionInterrupted | None = None) -> RunResult:
    outputs = history_outputs(run)
    return RunResult(status, outputs, node_meta(run, outputs), run.executed, failure, run.values)


def failed(run: Run, failure: NodeFailure, message: str) -> RunResult:
    """Report a node's exception as ComfyUI's execution_error and end the run."""
    error = failure.error
    event = ExecutionFailed(
        prompt_id=run.prompt_id,
        node_id=failure.node_id,
        node_type=run.nodes.get(failure.node_id, {}).get("class_type", ""),
        executed=list(run.executed),
        exception_message=message,
        exception_type=f"{type(error).__module__}.{type(error).__qualname__}".removeprefix("builtins."),
        traceback=traceback.format_exception(type(error), error, error.__traceback__),
        current_inputs={name: [describe_value(item) for item in items] for name, items in failure.inputs.items()},
        current_outputs={node_id: [] for node_id in run.values},
    )
    run.sink(event)
    return outcome(run, "error", event)


def interrupted(run: Run, node_id: str | None) -> RunResult:
    node_type = run.nodes[node_id]["class_type"] if node_id in run.nodes else None
    event = ExecutionInterrupted(run.prompt_id, node_id, node_type, list(run.executed))
    run.sink(event)
    return outcome(run, "interrupted", event)


def splice_subgraph(run: Run, registry: NodeRegistry, parent: str, call_index: int,
                    graph: Mapping[str, Any]) -> dict[str, str]:
    """Add an expansion's nodes to the run under ids unique to this call; returns local -> new ids."""
    renamed = {str(local): f"{parent}.{call_index}.{local}" for local in graph}
    for local, node in graph.items():
        class_type = node.get("class_type")
        if class_type not in registry:
            raise NodeFailure(parent, ValueError(f"expansion created node {local!r} of unknown type {class_type!r}"))
        inputs = {name: ([renamed.get(str(value[0]), str(value[0])), int(value[1])] if is_link(value) else value)
                  for name, value in (node.get("inputs") or {}).items()}
        for source in (value[0] for value in inputs.values() if is_link(value)):
            if source not in run.nodes and source not in renamed.values():
                raise NodeFailure(parent, ValueError(f"expansion node {local!r} links to unknown node {source!r}"))
        new_id = renamed[str(local)]
        run.nodes[new_id] = {"class_type": class_type, "inputs": inputs}
        run.parent[new_id] = parent
        run.display[new_id] = str(node.get("override_display_id") or run.display[parent])
    return renamed
