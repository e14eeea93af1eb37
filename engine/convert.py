"""Server-side conversion of ComfyUI UI (LiteGraph) workflows into API prompts.

Owns the mapping from a saved canvas file (schema v0.4 with link tuples, or v1 with link
objects) to the `{node_id: {class_type, inputs, _meta}}` prompt that /prompt executes
(comfyui-compat.md §14, frontend.md §8.2). It follows the browser's `graphToPrompt`
semantics: Reroute nodes and legacy PrimitiveNodes are resolved away, muted nodes are
dropped together with the links that pointed at them, bypassed nodes are wired through to
their first type-compatible input, positional `widgets_values` are named through
`/object_info` order, and `definitions.subgraphs` instances are flattened into inner
nodes with ids `"<instance>:<inner>"`. Legacy group nodes (`workflow>Name`, with their
definitions in `extra.groupNodes`) are first expanded into their inner nodes by
`engine.group_nodes`. Every malformed shape (a `links` that is not a list, a link id that is
a list, `inputs` that is a number, ...) is a `ConversionError` naming the node, the field,
what was expected and what came, never another exception.

Pure data in, data out: this module must not import torch, aiohttp or anything that loads
nodes; the caller passes the `/object_info` mapping. It keeps no module-level mutable state.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.canvas_widgets import (
    CONTROL_VALUES,
    ConversionError,
    Widget,
    assign_positional,
    shown,
    type_name,
    widget_specs,
)
from engine.comfy_core_nodes import describe_missing_type
from engine.group_nodes import expand_group_nodes, is_group_node_type
from engine.wire import is_link, normalise_link, types_compatible

__all__ = ["CONTROL_VALUES", "ConversionError", "is_api_prompt", "is_ui_workflow", "load_workflow", "ui_to_api",
           "unknown_node_types", "widget_defaults"]

MUTED, BYPASSED = 2, 4
SUBGRAPH_INPUT_ID, SUBGRAPH_OUTPUT_ID = "-10", "-20"
_REROUTES = frozenset({"Reroute", "Reroute (rgthree)"})
# Frontend-only nodes that never reach the server; skipped when object_info lacks them.
_FRONTEND_ONLY = frozenset({"Note", "MarkdownNote", "Label (rgthree)", "Bookmark (rgthree)", "Fast Muter (rgthree)",
                            "Fast Bypasser (rgthree)", "Fast Groups Muter (rgthree)", "Fast Groups Bypasser (rgthree)"})


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
        workflow = expand_group_nodes(workflow, object_info)
        _flatten(workflow, _collect_subgraphs(workflow), object_info, flat, _Scope("", None, False, ()))
        for node in flat.values():
            if node.kind == "real" and not node.hidden and node.mode not in (MUTED, BYPASSED):
                prompt[node.id] = _api_node(flat, node, object_info.get(node.raw["type"]))
    except RecursionError:  # thousands of chained reroutes or nested subgraphs: refuse, don't crash
        raise ConversionError("the workflow nests links or subgraphs too deeply to convert") from None
    except ConversionError as error:  # name every unknown type too: it may be the real cause
        unknown = [kind for kind in unknown_node_types(workflow, object_info) if f"'{kind}'" not in str(error)]
        if not unknown:
            raise
        raise ConversionError(f"{error}; the workflow also uses node types this server does not have: "
                              + "; ".join(describe_missing_type(kind) for kind in unknown)) from None
    # As in the frontend: a link into a node that is not sent (muted, skipped) is removed.
    for api_node in prompt.values():
        inputs = api_node["inputs"]
        for name in [n for n, v in inputs.items() if isinstance(v, list) and v[0] not in prompt]:
            del inputs[name]
    return prompt


def unknown_node_types(workflow: Any, object_info: Mapping[str, Any]) -> list[str]:
    """The node types a canvas uses (subgraph and group definitions included) that are
    neither in `object_info` nor resolved by the converter itself; sorted, for messages.
    Safe on malformed documents: what is not shaped like a node is passed over."""
    graphs: list[Any] = [workflow]
    if isinstance(workflow, Mapping):
        definitions = workflow.get("definitions")
        subgraphs = definitions.get("subgraphs") if isinstance(definitions, Mapping) else None
        graphs += subgraphs if isinstance(subgraphs, list) else []
        extra = workflow.get("extra")
        groups = extra.get("groupNodes") if isinstance(extra, Mapping) else None
        graphs += list(groups.values()) if isinstance(groups, Mapping) else []
    subgraph_ids = {str(graph.get("id")) for graph in graphs[1:] if isinstance(graph, Mapping)}
    found = set()
    for graph in graphs:
        nodes = graph.get("nodes") if isinstance(graph, Mapping) else None
        for raw in nodes if isinstance(nodes, list) else []:
            kind = raw.get("type") if isinstance(raw, Mapping) else None
            if isinstance(kind, str) and kind not in object_info and kind not in subgraph_ids \
                    and kind not in _REROUTES and kind not in _FRONTEND_ONLY and kind != "PrimitiveNode" \
                    and not is_group_node_type(kind):
                found.add(kind)
    return sorted(found)


def _collect_subgraphs(graph: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    found: dict[str, Mapping[str, Any]] = {}
    definitions = graph.get("definitions") or {}
    if not isinstance(definitions, Mapping):
        raise ConversionError(f"'definitions' must be an object, got {type_name(definitions)} {shown(definitions)}")
    subgraphs = definitions.get("subgraphs") or []
    if not isinstance(subgraphs, list):
        raise ConversionError(f"'definitions.subgraphs' must be a list, got {type_name(subgraphs)} {shown(subgraphs)}")
    for definition in subgraphs:
        if not isinstance(definition, Mapping) or "id" not in definition:
            raise ConversionError("a subgraph definition has no 'id'")
        if not isinstance(definition["id"], (str, int)) or isinstance(definition["id"], bool):
            raise ConversionError(f"a subgraph definition's 'id' must be a string, got {shown(definition['id'])}")
        if not isinstance(definition.get("nodes"), list):
            raise ConversionError(f"subgraph {shown(definition['id'])}: 'nodes' must be a list, "
                                  f"got {type_name(definition.get('nodes'))} {shown(definition.get('nodes'))}")
        for key in ("inputs", "outputs"):
            if not isinstance(definition.get(key) or [], list):
                raise ConversionError(f"subgraph {shown(definition['id'])}: '{key}' must be a list, "
                                      f"got {type_name(definition[key])} {shown(definition[key])}")
        found[str(definition["id"])] = definition
        found.update(_collect_subgraphs(definition))  # nested definitions, if saved inline
    return found


@dataclass(frozen=True)
class _Scope:
    prefix: str  # "" at the top level, "5:" inside instance 5
    instance: str | None  # execution id of the enclosing subgraph instance
    hidden: bool
    stack: tuple[str, ...]  # subgraph ids being expanded, to stop self-containing graphs


def is_id(value: Any) -> bool:
    """Node and link ids are numbers or strings; a list, an object or a boolean is never one."""
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def _parse_link(item: Any) -> tuple[Any, _Link]:
    if isinstance(item, Mapping):
        fields = [item.get(key) for key in ("id", "origin_id", "origin_slot", "target_id", "target_slot")]
    elif isinstance(item, list) and len(item) >= 5:
        fields = list(item[:5])
    else:
        raise ConversionError(f"malformed link {shown(item)}: expected [id, origin node, origin slot, target node, "
                              "target slot, type] or an object with those fields")
    link_id, origin, origin_slot, target, target_slot = fields
    for field, value in (("id", link_id), ("origin node", origin), ("target node", target)):
        if not is_id(value):
            raise ConversionError(f"malformed link {shown(item)}: its {field} must be a number or a string, "
                                  f"got {type_name(value)} {shown(value)}")
    try:  # slot indices may be saved as numeric strings
        return link_id, _Link(str(origin), _slot(origin_slot), str(target), _slot(target_slot))
    except (TypeError, ValueError, OverflowError):
        raise ConversionError(f"malformed link {shown(item)}: its slots must be whole numbers from 0, "
                              f"got {shown(origin_slot)} and {shown(target_slot)}") from None


def _slot(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(value)
    slot = int(value)
    if slot < 0:  # slots count from 0; negative numbers are ids of subgraph IO nodes, never slots
        raise ValueError(value)
    return slot


def _graph_links(graph: Mapping[str, Any], where: str) -> dict[Any, _Link]:
    items = graph.get("links")
    if items is None:
        return {}
    if not isinstance(items, list):
        raise ConversionError(f"{where}'links' must be a list of links, got {type_name(items)} {shown(items)}")
    return dict(_parse_link(item) for item in items if item is not None)


def _check_node_shape(raw: Any, prefix: str) -> None:
    """Refuse a node whose fields have the wrong JSON type, naming the node and the field."""
    if not isinstance(raw, Mapping) or not is_id(raw.get("id")) or not isinstance(raw.get("type"), str):
        raise ConversionError(f"malformed node {shown(raw)}: it needs an 'id' (a number or string) and a "
                              "'type' (a string)")
    label = f"node {prefix}{raw['id']} ({raw['type']!r})"
    for field in ("inputs", "outputs"):
        entries = raw.get(field)
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise ConversionError(f"{label}: '{field}' must be a list of slots, got {type_name(entries)} "
                                  f"{shown(entries)}")
        for slot, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                raise ConversionError(f"{label}: {field[:-1]} slot {slot} must be an object, got "
                                      f"{type_name(entry)} {shown(entry)}")
            link_key, expected = ("link", "a link id or null") if field == "inputs" else ("links", "a list of link ids")
            value = entry.get(link_key)
            bad = (value is not None and not is_id(value)) if field == "inputs" else \
                (value is not None and not isinstance(value, list))
            if bad:
                raise ConversionError(f"{label}: {field[:-1]} {entry.get('name', slot)!r} has '{link_key}' "
                                      f"{shown(value)}; expected {expected}, got {type_name(value)}")


def _flatten(graph: Mapping[str, Any], definitions: Mapping[str, Mapping[str, Any]],
             object_info: Mapping[str, Any], flat: dict[str, _Node], scope: _Scope) -> None:
    where = f"subgraph instance {scope.instance}: " if scope.instance else "the workflow's "
    links = _graph_links(graph, where)
    for raw in graph["nodes"]:
        _check_node_shape(raw, scope.prefix)
    local_ids = {str(raw["id"]) for raw in graph["nodes"]}
    for raw in graph["nodes"]:
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
    link_id = entry.get("link")  # shapes were checked by _check_node_shape
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
    for link in _graph_links(definition, f"subgraph instance {node_id}: ").values():
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
    if isinstance(values, Mapping) and isinstance(name, str):
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
    title = node.raw.get("title") if isinstance(node.raw.get("title"), str) else None
    title = title or (info or {}).get("display_name") or node.raw["type"]
    return {"class_type": node.raw["type"], "inputs": inputs, "_meta": {"title": title}}


def _wrap(value: Any) -> Any:
    # A bare list would read as a link, so literal lists travel boxed (comfyui-compat §14.1).
    return {"__value__": copy.deepcopy(value)} if isinstance(value, list) else copy.deepcopy(value)


def widget_defaults(info: Mapping[str, Any]) -> list[Any]:
    """One node type's widget default values in canvas order, as a fresh node's widgets_values
    holds them (without the frontend's extra entries such as control_after_generate)."""
    return [widget.default for widget in widget_specs(info)]


def _widget_values(node: _Node, info: Mapping[str, Any] | None) -> dict[str, Any]:
    values = node.raw.get("widgets_values")
    if values is None:
        return {}
    if isinstance(values, Mapping):
        widgets = None if info is None else {widget.name: widget for widget in widget_specs(info)}
        named = {str(key): value for key, value in values.items() if widgets is None or key in widgets}
        for name, value in named.items():
            if widgets is not None:
                _check_combo(node, widgets[name], value)
        return {name: _wrap(value) for name, value in named.items()}
    if not isinstance(values, list):
        raise ConversionError(f"{node.label}: 'widgets_values' must be a list or an object, "
                              f"got {type_name(values)} {shown(values)}")
    # An unknown type has no schema to name positional values by; validation reports it.
    return {} if info is None else _assign_positional(node, widget_specs(info), values)


def _assign_positional(node: _Node, widgets: list[Widget], values: list[Any]) -> dict[str, Any]:
    """Name positional values; a widget newer than the file takes the frontend's default."""
    saved = assign_positional(node.label, widgets, values)
    named: dict[str, Any] = {}
    for position, widget in enumerate(widgets):
        if position in saved:
            _check_combo(node, widget, saved[position])
            named[widget.name] = _wrap(saved[position])
        elif widget.default is not None:
            named[widget.name] = _wrap(widget.default)
    return named


def _check_combo(node: _Node, widget: Widget, value: Any) -> None:
    # A combo holds one of its choices (or a list of them for multiselect), never an object;
    # an object there is a damaged file, and would otherwise read as a boxed value.
    if widget.kind == "COMBO" and isinstance(value, Mapping):
        raise ConversionError(f"{node.label}: widget '{widget.name}' expects one of its choices, "
                              f"got an object {shown(value)}")
