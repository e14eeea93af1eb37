"""Server-side conversion of ComfyUI UI (LiteGraph) workflows into API prompts.

Owns the mapping from a saved canvas file (schema v0.4 with link tuples, or v1 with link
objects) to the `{node_id: {class_type, inputs, _meta}}` prompt that /prompt executes
(comfyui-compat.md §14, frontend.md §8.2). It follows the browser's `graphToPrompt`
semantics: Reroute nodes and legacy PrimitiveNodes are resolved away, muted nodes are
dropped together with the links that pointed at them, bypassed nodes are wired through to
their first type-compatible input, positional `widgets_values` are named through
`/object_info` order, and `definitions.subgraphs` instances are flattened into inner
nodes with ids `"<instance>:<inner>"`. Legacy group nodes (`workflow>Name`) are rejected.

Pure data in, data out: this module must not import torch, aiohttp or anything that loads
nodes; the caller passes the `/object_info` mapping. It keeps no module-level mutable state.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.wire import is_link, normalise_link, types_compatible

MUTED, BYPASSED = 2, 4
SUBGRAPH_INPUT_ID, SUBGRAPH_OUTPUT_ID = "-10", "-20"
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})
_SCALAR_WIDGETS = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN"})
_REROUTES = frozenset({"Reroute", "Reroute (rgthree)"})
# Frontend-only nodes that never reach the server; skipped when object_info lacks them.
_FRONTEND_ONLY = frozenset({"Note", "MarkdownNote", "Label (rgthree)", "Bookmark (rgthree)", "Fast Muter (rgthree)",
                            "Fast Bypasser (rgthree)", "Fast Groups Muter (rgthree)", "Fast Groups Bypasser (rgthree)"})


class ConversionError(ValueError):
    """A UI workflow that cannot be turned into an API prompt; the message names the node."""


@dataclass(frozen=True)
class _Ref:
    """Output `slot` of `node`; with `via_input`, input `slot` of subgraph instance `node`."""

    node: str
    slot: int
    via_input: bool = False


@dataclass(frozen=True)
class _Literal:
    """A value that replaces a link (a PrimitiveNode or a subgraph instance's widget)."""

    value: Any


@dataclass(frozen=True)
class _Node:
    id: str  # execution id: "7", or "5:7" for node 7 inside subgraph instance 5
    raw: Mapping[str, Any]
    kind: str  # real | reroute | primitive | virtual | subgraph
    inputs: tuple[_Ref | None, ...]
    outputs: tuple[_Ref | None, ...] = ()  # subgraph instances: the inner source per output
    hidden: bool = False  # inside a muted or bypassed subgraph instance

    @property
    def label(self) -> str:
        return f"node {self.id} ({self.raw.get('type')!r})"

    @property
    def mode(self) -> int:
        return _mode(self.raw)


def _mode(raw: Mapping[str, Any]) -> int:
    mode = raw.get("mode")
    return mode if isinstance(mode, int) else 0


@dataclass(frozen=True)
class _Widget:
    name: str
    default: Any
    extras: tuple[str, ...]  # values the frontend may save after this one: control, filter, upload


@dataclass(frozen=True)
class _Link:
    origin: str
    origin_slot: int
    target: str
    target_slot: int


_Resolved = _Ref | _Literal | None


def is_ui_workflow(data: Any) -> bool:
    """True for a LiteGraph canvas file (v0.4 or v1): a `nodes` list plus graph bookkeeping."""
    if not isinstance(data, Mapping) or not isinstance(data.get("nodes"), list):
        return False
    return any(key in data for key in ("links", "last_node_id", "state", "version"))


def is_api_prompt(data: Any) -> bool:
    """True for an API prompt: every value is a node with a string `class_type` (vacuously for {})."""
    return isinstance(data, Mapping) and all(
        isinstance(node, Mapping) and isinstance(node.get("class_type"), str) for node in data.values()
    )


def load_workflow(data: Mapping[str, Any], object_info: Mapping[str, Mapping[str, Any]]) -> dict[str, dict]:
    """Return an API prompt for either input format; API prompts come back with string ids."""
    if is_ui_workflow(data):
        return ui_to_api(data, object_info)
    if is_api_prompt(data):
        return {str(key): _normalise_api_node(str(key), node) for key, node in data.items()}
    raise ConversionError("the data is neither a UI workflow (nodes/links) nor an API prompt (class_type per node)")


def _normalise_api_node(node_id: str, node: Mapping[str, Any]) -> dict[str, Any]:
    normalised = {key: copy.deepcopy(value) for key, value in node.items() if key != "inputs"}
    inputs = node.get("inputs") or {}
    if not isinstance(inputs, Mapping):
        raise ConversionError(f"node {node_id} ({node['class_type']!r}): 'inputs' must be an object")
    normalised["inputs"] = {name: _normalise_value(value) for name, value in inputs.items()}
    return normalised


def _normalise_value(value: Any) -> Any:
    # In API format a 2-element [id, slot] list is a link; ids may have been saved as ints.
    return normalise_link(value) if is_link(value) else copy.deepcopy(value)


def ui_to_api(workflow: Mapping[str, Any], object_info: Mapping[str, Mapping[str, Any]]) -> dict[str, dict]:
    """Convert a UI workflow (v0.4 or v1, subgraphs included) into an API prompt."""
    if not isinstance(workflow, Mapping) or not isinstance(workflow.get("nodes"), list):
        raise ConversionError("a UI workflow needs a 'nodes' list")
    flat: dict[str, _Node] = {}
    prompt: dict[str, dict] = {}
    try:
        _flatten(workflow, _collect_subgraphs(workflow), object_info, flat, _Scope("", None, False, ()))
        for node in flat.values():
            if node.kind == "real" and not node.hidden and node.mode not in (MUTED, BYPASSED):
                prompt[node.id] = _api_node(flat, node, object_info.get(node.raw["type"]))
    except RecursionError:  # thousands of chained reroutes or nested subgraphs: refuse, don't crash
        raise ConversionError("the workflow nests links or subgraphs too deeply to convert") from None
    # As in the frontend: a link into a node that is not sent (muted, skipped) is removed.
    for api_node in prompt.values():
        inputs = api_node["inputs"]
        for name in [n for n, v in inputs.items() if isinstance(v, list) and v[0] not in prompt]:
            del inputs[name]
    return prompt


def _collect_subgraphs(graph: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    found: dict[str, Mapping[str, Any]] = {}
    for definition in (graph.get("definitions") or {}).get("subgraphs") or []:
        if not isinstance(definition, Mapping) or "id" not in definition:
            raise ConversionError("a subgraph definition has no 'id'")
        found[str(definition["id"])] = definition
        found.update(_collect_subgraphs(definition))  # nested definitions, if saved inline
    return found


@dataclass(frozen=True)
class _Scope:
    prefix: str  # "" at the top level, "5:" inside instance 5
    instance: str | None  # execution id of the enclosing subgraph instance
    hidden: bool
    stack: tuple[str, ...]  # subgraph ids being expanded, to stop self-containing graphs


def _parse_link(item: Any) -> tuple[Any, _Link]:
    if isinstance(item, Mapping):
        fields = [item.get(key) for key in ("id", "origin_id", "origin_slot", "target_id", "target_slot")]
    elif isinstance(item, Sequence) and not isinstance(item, str) and len(item) >= 5:
        fields = list(item[:5])
    else:
        raise ConversionError(f"malformed link {item!r}")
    link_id, origin, origin_slot, target, target_slot = fields
    try:  # slot indices may be saved as numeric strings
        return link_id, _Link(str(origin), int(origin_slot), str(target), int(target_slot))
    except (TypeError, ValueError):
        raise ConversionError(f"malformed link {item!r}") from None


def _flatten(graph: Mapping[str, Any], definitions: Mapping[str, Mapping[str, Any]],
             object_info: Mapping[str, Any], flat: dict[str, _Node], scope: _Scope) -> None:
    links = dict(_parse_link(item) for item in graph.get("links") or [] if item is not None)
    local_ids = {str(raw.get("id")) for raw in graph["nodes"] if isinstance(raw, Mapping)}
    for raw in graph["nodes"]:
        if not isinstance(raw, Mapping) or raw.get("id") is None or not isinstance(raw.get("type"), str):
            raise ConversionError(f"malformed node {str(raw)[:80]}: it needs an 'id' and a 'type'")
        node_id = scope.prefix + str(raw["id"])
        if node_id in flat:
            raise ConversionError(f"node {node_id} ({raw['type']!r}) appears twice")
        kind = _node_kind(node_id, raw["type"], definitions, object_info)
        inputs = tuple(_input_ref(node_id, raw, entry, links, local_ids, scope) for entry in raw.get("inputs") or [])
        if kind != "subgraph":
            flat[node_id] = _Node(node_id, raw, kind, inputs, hidden=scope.hidden)
            continue
        definition = definitions[raw["type"]]
        if raw["type"] in scope.stack:
            raise ConversionError(f"node {node_id}: subgraph {raw['type']!r} contains itself")
        outputs = _subgraph_outputs(node_id, definition)
        flat[node_id] = _Node(node_id, raw, kind, inputs, outputs, scope.hidden)
        hidden = scope.hidden or _mode(raw) in (MUTED, BYPASSED)
        inner = _Scope(node_id + ":", node_id, hidden, scope.stack + (raw["type"],))
        _flatten(definition, definitions, object_info, flat, inner)


def _node_kind(node_id: str, node_type: str, definitions: Mapping[str, Any], object_info: Mapping[str, Any]) -> str:
    if node_type in definitions:
        return "subgraph"
    if node_type in object_info:
        return "real"
    if node_type.startswith(("workflow>", "workflow/")):
        raise ConversionError(
            f"node {node_id} ({node_type!r}) is a legacy group node, which is unsupported; "
            "convert it to a subgraph in the editor and save again"
        )
    if node_type in _REROUTES:
        return "reroute"
    if node_type == "PrimitiveNode":
        return "primitive"
    # Unknown real types stay, so validation can report missing_node_type by name.
    return "virtual" if node_type in _FRONTEND_ONLY else "real"


def _input_ref(node_id: str, raw: Mapping[str, Any], entry: Mapping[str, Any], links: Mapping[Any, _Link],
               local_ids: set[str], scope: _Scope) -> _Ref | None:
    if not isinstance(entry, Mapping):
        raise ConversionError(f"node {node_id} ({raw['type']!r}) has a malformed input entry {entry!r}")
    link_id = entry.get("link")
    if link_id is None:
        return None
    where = f"node {node_id} ({raw['type']!r}) input {entry.get('name')!r}"
    link = links.get(link_id)
    if link is None:
        raise ConversionError(f"{where}: link {link_id} is not in the workflow's links")
    if link.origin == SUBGRAPH_INPUT_ID:
        if scope.instance is None:
            raise ConversionError(f"{where}: link {link_id} starts at a subgraph input outside a subgraph")
        return _Ref(scope.instance, link.origin_slot, via_input=True)
    if link.origin not in local_ids:
        raise ConversionError(f"{where}: link {link_id} comes from node {link.origin}, which does not exist")
    return _Ref(scope.prefix + link.origin, link.origin_slot)


def _subgraph_outputs(node_id: str, definition: Mapping[str, Any]) -> tuple[_Ref | None, ...]:
    count = len(definition.get("outputs") or [])
    sources: list[_Ref | None] = [None] * count
    inner_ids = {str(raw.get("id")) for raw in definition.get("nodes") or [] if isinstance(raw, Mapping)}
    for item in definition.get("links") or []:
        _, link = _parse_link(item)
        if link.target != SUBGRAPH_OUTPUT_ID or not 0 <= link.target_slot < count:
            continue
        via_input = link.origin == SUBGRAPH_INPUT_ID
        if not via_input and link.origin not in inner_ids:
            raise ConversionError(f"node {node_id}: its subgraph output comes from missing node {link.origin}")
        origin = node_id if via_input else f"{node_id}:{link.origin}"
        sources[link.target_slot] = _Ref(origin, link.origin_slot, via_input)
    return tuple(sources)


def _visit(seen: frozenset[tuple[str, str, int]], node: _Node, side: str, slot: int) -> frozenset:
    if (node.id, side, slot) in seen:
        raise ConversionError(f"{node.label}: its links form a loop through virtual or bypassed nodes")
    return seen | {(node.id, side, slot)}


def _resolve_input(flat: Mapping[str, _Node], node: _Node, slot: int, want: str | None,
                   seen: frozenset[tuple[str, str, int]]) -> _Resolved:
    """What feeds input `slot` of `node`; `want` is the type the final consumer expects."""
    seen = _visit(seen, node, "in", slot)
    ref = node.inputs[slot] if 0 <= slot < len(node.inputs) else None
    if ref is None:
        return _instance_widget(node, slot) if node.kind == "subgraph" else None
    source = flat[ref.node]  # every _Ref was checked against its graph while flattening
    if ref.via_input:
        return _resolve_input(flat, source, ref.slot, None, seen)
    want = want or str(node.raw["inputs"][slot].get("type") or "*")
    return _resolve_output(flat, source, ref.slot, want, seen)


def _resolve_output(flat: Mapping[str, _Node], node: _Node, slot: int, want: str,
                    seen: frozenset[tuple[str, str, int]]) -> _Resolved:
    """What output `slot` of `node` really is once virtual and bypassed nodes are seen through."""
    seen = _visit(seen, node, "out", slot)
    if node.kind == "primitive":  # the frontend writes its value into each target widget
        values = node.raw.get("widgets_values")
        return _Literal(values[0]) if isinstance(values, list) and values else None
    if node.mode == BYPASSED:
        index = _bypass_input(node, slot, want)
        return None if index is None else _resolve_input(flat, node, index, None, seen)
    if node.kind == "subgraph":
        ref = node.outputs[slot] if 0 <= slot < len(node.outputs) else None
        if ref is None:
            return None
        if ref.via_input:
            return _resolve_input(flat, node, ref.slot, None, seen)
        return _resolve_output(flat, flat[ref.node], ref.slot, want, seen)
    if node.kind == "reroute":
        return _resolve_input(flat, node, 0, want, seen) if node.inputs else None
    if node.kind == "virtual":
        return None
    return _Ref(node.id, slot)  # a real node; a muted one is pruned after conversion


def _bypass_input(node: _Node, slot: int, want: str) -> int | None:
    """The input a bypassed node passes to output `slot` (ComfyUI frontend rules): the input
    at the same index when its type fits, else the first exact match, else the first fit."""
    types = [str(entry.get("type") or "*") for entry in node.raw.get("inputs") or []]
    outputs = node.raw.get("outputs") or []
    output = outputs[slot] if 0 <= slot < len(outputs) and isinstance(outputs[slot], Mapping) else {}
    made = str(output.get("type") or want)
    if not types:
        return None
    if want in ("*", ""):
        return slot if slot < len(types) else 0
    if slot < len(types) and types_compatible(types[slot], made) and types_compatible(types[slot], want):
        return slot
    if want in types:
        return types.index(want)
    fits = [i for i, kind in enumerate(types) if types_compatible(kind, made) and types_compatible(kind, want)]
    return fits[0] if fits else None


def _instance_widget(node: _Node, slot: int) -> _Literal | None:
    """The widget value a subgraph instance shows for an unlinked input, if it has one."""
    entries = node.raw.get("inputs") or []
    values = node.raw.get("widgets_values")
    name = entries[slot].get("name") if slot < len(entries) else None
    if isinstance(values, Mapping):
        return _Literal(values[name]) if name in values else None
    widget_slots = [i for i, entry in enumerate(entries) if entry.get("widget")]
    if isinstance(values, list) and slot in widget_slots and widget_slots.index(slot) < len(values):
        return _Literal(values[widget_slots.index(slot)])
    return None


def _api_node(flat: Mapping[str, _Node], node: _Node, info: Mapping[str, Any] | None) -> dict[str, Any]:
    inputs = _widget_values(node, info)
    for slot, entry in enumerate(node.raw.get("inputs") or []):
        resolved = _resolve_input(flat, node, slot, None, frozenset())
        if isinstance(resolved, _Ref):
            inputs[str(entry.get("name"))] = [resolved.node, resolved.slot]
        elif isinstance(resolved, _Literal):
            inputs[str(entry.get("name"))] = _wrap(resolved.value)
        # None: nothing connected or nothing to connect through; a widget keeps its value
    title = node.raw.get("title") or (info or {}).get("display_name") or node.raw["type"]
    return {"class_type": node.raw["type"], "inputs": inputs, "_meta": {"title": title}}


def _wrap(value: Any) -> Any:
    # A bare list would read as a link, so literal lists travel boxed (comfyui-compat §14.1).
    return {"__value__": copy.deepcopy(value)} if isinstance(value, list) else copy.deepcopy(value)


def widget_defaults(info: Mapping[str, Any]) -> list[Any]:
    """One node type's widget default values in canvas order, as a fresh node's widgets_values
    holds them (without the frontend's extra entries such as control_after_generate)."""
    return [widget.default for widget in _widget_specs(info)]


def _widget_specs(info: Mapping[str, Any]) -> list[_Widget]:
    """The node's widgets in canvas order: required then optional, each in input_order."""
    sections, order = info.get("input") or {}, info.get("input_order") or {}
    widgets: list[_Widget] = []
    for section in ("required", "optional"):
        entries = sections.get(section) or {}
        for name in order.get(section) or list(entries):
            widget = _as_widget(name, entries.get(name))
            if widget is not None:
                widgets.append(widget)
    return widgets


def _as_widget(name: str, spec: Any) -> _Widget | None:
    if not isinstance(spec, (list, tuple)) or not spec:
        return None
    kind, options = spec[0], spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {}
    choices = kind if isinstance(kind, list) else options.get("options") if kind == "COMBO" else None
    if (choices is None and kind not in _SCALAR_WIDGETS) or options.get("forceInput"):
        return None
    default = options.get("default", choices[0] if choices else None)
    # INT widgets may carry the frontend's control_after_generate value; a flagged combo adds
    # a filter text too; an upload combo is followed by its button's value in older files.
    control = bool(options.get("control_after_generate")) or kind == "INT"
    extras = (("control", "filter") if choices is not None else ("control",)) if control else ()
    extras += tuple("upload" for key, flag in options.items() if key.endswith("_upload") and flag)
    return _Widget(name, default, extras)


def _widget_values(node: _Node, info: Mapping[str, Any] | None) -> dict[str, Any]:
    values = node.raw.get("widgets_values")
    if values is None:
        return {}
    if isinstance(values, Mapping):
        names = None if info is None else {widget.name for widget in _widget_specs(info)}
        return {key: _wrap(value) for key, value in values.items() if names is None or key in names}
    if not isinstance(values, list):
        raise ConversionError(f"{node.label}: widgets_values must be a list or an object")
    # An unknown type has no schema to name positional values by; validation reports it.
    return {} if info is None else _assign_positional(node, _widget_specs(info), values)


def _assign_positional(node: _Node, widgets: list[_Widget], values: list[Any]) -> dict[str, Any]:
    """Name positional values; optional extra values are skipped only while there are more
    values left than the remaining widgets need, so the count always reconciles."""
    named: dict[str, Any] = {}
    index = 0
    for position, widget in enumerate(widgets):
        if index >= len(values):
            if widget.default is not None:  # a widget newer than the file: the frontend default
                named[widget.name] = _wrap(widget.default)
            continue
        named[widget.name] = _wrap(values[index])
        index += 1
        needed = len(widgets) - position - 1
        for extra in widget.extras:  # a missing control value means no filter value either
            if len(values) - index <= needed or not _looks_extra(values[index], extra):
                break
            index += 1
    if index < len(values):
        raise ConversionError(
            f"{node.label}: {len(values)} widget values do not fit its {len(widgets)} widgets "
            f"({[widget.name for widget in widgets]}); {values[index:]!r} are left over"
        )
    return named


def _looks_extra(value: Any, extra: str) -> bool:
    # Control values are fixed keywords; filter text and upload button values are strings.
    if extra == "control":
        return isinstance(value, str) and value in CONTROL_VALUES
    return isinstance(value, str) or value is None
