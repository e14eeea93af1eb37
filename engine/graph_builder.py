"""Build API-format subgraphs for node expansion, API-compatible with ComfyUI's GraphBuilder.

ComfyUI V1 nodes expand themselves by returning `{"result": ..., "expand": graph}` where
`graph` comes from `comfy_execution.graph_utils.GraphBuilder`; test clients build whole
prompts with it too. This module is an independent implementation of that documented
interface (ComfyUI is GPL-3.0; nothing here is copied): `GraphBuilder(prefix=None)`,
`.node(class_type, id=None, **inputs) -> Node`, `Node.out(index) -> [id, index]`,
`Node.set_input(key, value)` (None removes the input), `.lookup_node(id)`,
`.remove_node(id)`, `.finalize() -> {id: {"class_type", "inputs"[, "override_display_id"]}}`,
and `is_link(value)`.

Every node id a builder creates carries its prefix, so ids from different expansions never
collide. With no explicit prefix the builder takes the ambient default prefix, which the V1
adapter's run hook scopes per node call with `default_prefix(node_id, call_index)` (ComfyUI's
`GraphBuilder.set_default_prefix`); the executor renames spliced ids itself either way. This
module is pure Python: it imports nothing from the executor, the server or model code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NamedTuple

from engine.wire import is_link


class _PrefixState(NamedTuple):
    """The ambient default prefix: `<root>.<call_index>.<graph_index>.`."""

    root: str
    call_index: int
    graph_index: int


# ComfyUI's API makes the default prefix ambient (`GraphBuilder()` takes no node id), so it
# has to live somewhere outside the builder. A context variable holding immutable tuples
# keeps it per task and per thread, as CURRENT_NODE_CONTEXT does, instead of a global that
# concurrent async nodes would race on.
_NO_PREFIX = _PrefixState("", 0, 0)  # ComfyUI's default: ids become ".0.0.<n>"
_DEFAULT_PREFIX: ContextVar[_PrefixState] = ContextVar("flowmill_graph_builder_prefix", default=_NO_PREFIX)


@contextmanager
def default_prefix(root: str, call_index: int = 0) -> Iterator[None]:
    """Scope the default prefix for builders created while one node call runs.

    The V1 adapter wraps each node call in this (an async node's task is created inside it,
    so the task inherits the value).
    """
    token = _DEFAULT_PREFIX.set(_PrefixState(root, call_index, 0))
    try:
        yield
    finally:
        _DEFAULT_PREFIX.reset(token)


@contextmanager
def node_call_prefix(node_id: str) -> Iterator[None]:
    """Scope the default prefix to `node_id` for one node call, unless the caller already did.

    A caller that scoped this node itself (`default_prefix(node_id, call_index)`, as
    ComfyUI's executor does per list index) keeps its call index; otherwise the call gets
    `<node_id>.0.<n>.` prefixes. Either way each call starts again at graph index 0, so ids
    are the same on every run, and nothing leaks into the caller's context.
    """
    if _DEFAULT_PREFIX.get().root == node_id:
        yield
        return
    with default_prefix(node_id, 0):
        yield


class Node:
    """One node of a graph under construction; its `id` already includes the prefix."""

    def __init__(self, id: str, class_type: str, inputs: dict[str, Any]) -> None:
        self.id = id
        self.class_type = class_type
        self.inputs = inputs
        self.override_display_id: str | None = None

    def get_id(self) -> str:
        return self.id

    def out(self, index: int) -> list[Any]:
        """A link to output `index` of this node."""
        return [self.id, index]

    def set_input(self, key: str, value: Any) -> None:
        """Set an input; None removes it, so an optional input can be left unconnected."""
        if value is None:
            self.inputs.pop(key, None)
        else:
            self.inputs[key] = value

    def get_input(self, key: str) -> Any:
        return self.inputs.get(key)

    def set_override_display_id(self, display_id: str | None) -> None:
        """Report this node's progress and results under another (UI) node id."""
        self.override_display_id = display_id

    def serialize(self) -> dict[str, Any]:
        # A copy, so editing the builder after finalize() cannot change a submitted graph.
        entry: dict[str, Any] = {"class_type": self.class_type, "inputs": dict(self.inputs)}
        if self.override_display_id is not None:
            entry["override_display_id"] = self.override_display_id
        return entry


class GraphBuilder:
    """Collects nodes and emits an API-format prompt dict."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = GraphBuilder.alloc_prefix() if prefix is None else prefix
        self.nodes: dict[str, Node] = {}
        self.id_gen = 1

    @classmethod
    def set_default_prefix(cls, prefix_root: str, call_index: int, graph_index: int = 0) -> None:
        """ComfyUI's way to set the ambient prefix; prefer `default_prefix(...)`, which restores it."""
        _DEFAULT_PREFIX.set(_PrefixState(str(prefix_root), call_index, graph_index))

    @classmethod
    def alloc_prefix(
        cls, root: str | None = None, call_index: int | None = None, graph_index: int | None = None
    ) -> str:
        """Return `<root>.<call_index>.<graph_index>.` and advance the ambient graph index.

        Advancing it gives each builder created during one node call a distinct prefix.
        """
        state = _DEFAULT_PREFIX.get()
        prefix = (
            f"{state.root if root is None else root}."
            f"{state.call_index if call_index is None else call_index}."
            f"{state.graph_index if graph_index is None else graph_index}."
        )
        _DEFAULT_PREFIX.set(state._replace(graph_index=state.graph_index + 1))
        return prefix

    def node(self, class_type: str, id: str | None = None, **inputs: Any) -> Node:
        """Add a node (or return the existing one with that id); ids default to 1, 2, 3, ...

        Keyword inputs are kept as given, None included, as ComfyUI does; use
        `Node.set_input(key, None)` to leave an input out.
        """
        if id is None:
            id = str(self.id_gen)
            self.id_gen += 1
        full_id = self.prefix + id
        existing = self.nodes.get(full_id)
        if existing is not None:
            return existing
        created = Node(full_id, class_type, dict(inputs))
        self.nodes[full_id] = created
        return created

    def lookup_node(self, id: str) -> Node | None:
        """The node added under `id` (without the prefix), or None."""
        return self.nodes.get(self.prefix + id)

    def remove_node(self, id: str) -> None:
        full_id = self.prefix + id
        if full_id not in self.nodes:
            raise KeyError(f"graph has no node {id!r} (full id {full_id!r})")
        del self.nodes[full_id]

    def replace_node_output(self, node_id: str, index: int, new_value: Any) -> None:
        """Point every link to output `index` of `node_id` at `new_value` (None unlinks)."""
        source = self.prefix + node_id
        for node in self.nodes.values():
            for key, value in list(node.inputs.items()):
                if is_link(value) and value[0] == source and value[1] == index:
                    node.set_input(key, new_value)

    def finalize(self) -> dict[str, dict[str, Any]]:
        """The API-format graph `{id: {"class_type", "inputs"[, "override_display_id"]}}`."""
        return {node_id: node.serialize() for node_id, node in self.nodes.items()}
