"""Expansion of the legacy frontend's group nodes into the nodes they group.

Before subgraphs, ComfyUI's frontend could merge selected nodes into one "group node". The
canvas shows a node of type `workflow>NAME` (`workflow/NAME` before frontend 1.2.63), and
`extra.groupNodes[NAME]` keeps its definition: the inner nodes in execution order, each
known by its index; their links as `[origin index, origin slot, target index, target slot,
origin id at creation, type]`, a null origin marking an input that came from outside; and
a per-index `config` that renames or hides inputs and outputs. The frontend derives the
group node's input slots, output slots and widgets from that definition, in a fixed order,
and when queueing replaces every instance by its inner nodes with ids "<instance>:<index>".

`expand_group_nodes` does the same on the server: it returns a canvas with each instance
replaced by its inner nodes, the instance's widget values dealt out to them, and the outer
links re-pointed at the inner slots they stand for, so the converter then sees an ordinary
canvas. Pure data in, data out: no torch, no aiohttp, no module-level mutable state.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.canvas_widgets import (
    ConversionError,
    Widget,
    as_widget,
    assign_positional,
    shown,
    type_name,
    widget_specs,
)
from engine.comfy_core_nodes import describe_missing_type

GROUP_PREFIXES = ("workflow>", "workflow/")
_MUTED, _BYPASSED = 2, 4
_REROUTE = "Reroute"
_PRIMITIVE = "PrimitiveNode"
# Inner nodes the frontend handles itself; any other type must be known to lay out the group.
_FRONTEND_ONLY = frozenset({_REROUTE, _PRIMITIVE, "Note", "MarkdownNote"})


@dataclass(frozen=True)
class _InnerLink:
    origin: int | None  # None: the value enters through one of the group's inputs
    origin_slot: int
    target: int
    target_slot: int
    type: Any


@dataclass
class _Layout:
    """What an instance's slots and widget values stand for, in the frontend's order."""

    inputs: list[tuple[int, int]] = field(default_factory=list)  # group input -> (inner index, input slot)
    outputs: list[tuple[int, int]] = field(default_factory=list)  # group output -> (inner index, output slot)
    widgets: list[tuple[int, Widget]] = field(default_factory=list)  # instance widget -> (inner index, widget)


def is_group_node_type(node_type: Any) -> bool:
    return isinstance(node_type, str) and node_type.startswith(GROUP_PREFIXES)


def expand_group_nodes(workflow: Mapping[str, Any], object_info: Mapping[str, Any]) -> Mapping[str, Any]:
    """`workflow` itself when it has no group node instances, else a copy with them expanded."""
    nodes = workflow.get("nodes")
    if not isinstance(nodes, list) or not any(isinstance(raw, Mapping) and is_group_node_type(raw.get("type"))
                                              for raw in nodes):
        return workflow
    definitions = _definitions(workflow)
    outer_links = _outer_links(workflow.get("links"))
    layouts: dict[str, tuple[_Layout, list[_InnerLink]]] = {}
    expanded_nodes: list[Any] = []
    instances: dict[str, tuple[Mapping[str, Any], _Layout, list[dict[str, Any]]]] = {}
    new_links: list[list[Any]] = []
    for raw in nodes:
        if not (isinstance(raw, Mapping) and is_group_node_type(raw.get("type"))):
            expanded_nodes.append(raw)
            continue
        name = raw["type"].split(">", 1)[1] if raw["type"].startswith("workflow>") else raw["type"].split("/", 1)[1]
        instance_id = _instance_id(raw)
        if name not in definitions:
            raise ConversionError(f"node {instance_id} ({raw['type']!r}) is a legacy group node whose definition "
                                  f"is missing from extra.groupNodes (it has {sorted(definitions)})")
        if name not in layouts:
            inner_links = _inner_links(name, definitions[name])
            layouts[name] = (_layout(name, definitions[name], inner_links, object_info), inner_links)
        layout, inner_links = layouts[name]
        inner = _inner_nodes(raw, instance_id, definitions[name], layout, object_info)
        new_links.extend(_wire_inside(instance_id, name, inner, inner_links))
        instances[instance_id] = (raw, layout, inner)
        expanded_nodes.extend(inner)
    for link in outer_links:
        new_links.append(_repoint(link, instances))
    result = dict(workflow)
    result["nodes"] = expanded_nodes
    result["links"] = new_links
    return result


# --------------------------------------------------------------------------- reading the file


def _definitions(workflow: Mapping[str, Any]) -> Mapping[str, Any]:
    extra = workflow.get("extra")
    groups = extra.get("groupNodes") if isinstance(extra, Mapping) else None
    if groups is None:
        return {}
    if not isinstance(groups, Mapping):
        raise ConversionError(f"'extra.groupNodes' must be an object of group definitions, got "
                              f"{type_name(groups)} {shown(groups)}")
    for name, definition in groups.items():
        where = f"group node definition {name!r}"
        if not isinstance(definition, Mapping) or not isinstance(definition.get("nodes"), list):
            raise ConversionError(f"{where}: expected an object with a 'nodes' list, got {shown(definition)}")
        for index, raw in enumerate(definition["nodes"]):
            if not isinstance(raw, Mapping) or not isinstance(raw.get("type"), str):
                raise ConversionError(f"{where}: inner node {index} needs a 'type' string, got {shown(raw)}")
            _check_slot_lists(raw, f"{where}: inner node {index} ({raw['type']!r})")
        if not isinstance(definition.get("config") or {}, Mapping):
            raise ConversionError(f"{where}: 'config' must be an object, got {shown(definition.get('config'))}")
    return groups


def _instance_id(raw: Mapping[str, Any]) -> str:
    node_id = raw.get("id")
    if not isinstance(node_id, (int, str)) or isinstance(node_id, bool):
        raise ConversionError(f"malformed node {shown(raw)}: its 'id' must be a number or a string")
    _check_slot_lists(raw, f"node {node_id} ({raw['type']!r})")
    return str(node_id)


def _check_slot_lists(raw: Mapping[str, Any], where: str) -> None:
    """A node's 'inputs' and 'outputs', where present, are lists of slot objects."""
    for key in ("inputs", "outputs"):
        entries = raw.get(key)
        if entries is not None and (not isinstance(entries, list)
                                    or not all(isinstance(entry, Mapping) for entry in entries)):
            raise ConversionError(f"{where}: '{key}' must be a list of slot objects, "
                                  f"got {type_name(entries)} {shown(entries)}")


def _whole(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value in (
            float("inf"), float("-inf")) or int(value) != value:
        return None
    return int(value)


def _inner_links(name: str, definition: Mapping[str, Any]) -> list[_InnerLink]:
    items = definition.get("links") or []
    if not isinstance(items, list):
        raise ConversionError(f"group node definition {name!r}: 'links' must be a list, got {shown(items)}")
    return [_inner_link(name, item, len(definition["nodes"])) for item in items]


def _inner_link(name: str, item: Any, count: int) -> _InnerLink:
    fields = item[:4] if isinstance(item, list) and len(item) >= 4 else [None, None, None, None]
    origin, origin_slot, target, target_slot = (_whole(value) for value in fields)
    indices_ok = (fields[0] is None or (origin is not None and 0 <= origin < count)) and \
        target is not None and 0 <= target < count
    if not indices_ok or origin_slot is None or target_slot is None or min(origin_slot, target_slot) < 0:
        raise ConversionError(f"group node definition {name!r}: malformed link {shown(item)}; expected "
                              "[origin index or null, origin slot, target index, target slot, ...] with node "
                              f"indices below {count}")
    return _InnerLink(origin, origin_slot, target, target_slot, item[5] if len(item) > 5 else None)


# --------------------------------------------------------------------------- the frontend's layout


def _layout(name: str, definition: Mapping[str, Any], links: list[_InnerLink],
            object_info: Mapping[str, Any]) -> _Layout:
    """The instance's inputs, outputs and widgets as the frontend builds them: inner nodes in
    order; per node its unlinked socket inputs, then its visible outputs and its widgets;
    widgets converted to inputs come after every other input and widget."""
    linked_from: dict[int, set[int]] = {}
    linked_to: dict[int, set[int]] = {}
    for link in links:
        if link.origin is None:
            continue  # fed from outside: that input becomes one of the group's inputs
        linked_from.setdefault(link.origin, set()).add(link.origin_slot)
        linked_to.setdefault(link.target, set()).add(link.target_slot)
    unknown = sorted({raw["type"] for raw in definition["nodes"]
                      if raw["type"] not in object_info and raw["type"] not in _FRONTEND_ONLY})
    if unknown:  # its slots cannot be laid out, just as the frontend refuses to build it
        raise ConversionError(f"legacy group node {name!r} cannot be expanded: "
                              + "; ".join(describe_missing_type(kind) for kind in unknown))
    external = _external_outputs(definition.get("external"))
    config = definition.get("config") or {}
    layout, converted = _Layout(), _Layout()
    for index, raw in enumerate(definition["nodes"]):
        node_config = config.get(str(index)) if isinstance(config.get(str(index)), Mapping) else {}
        shape = _inner_shape(raw, index, links, linked_from, linked_to, external, object_info)
        if shape is None:
            continue  # a virtual node (Note), an unlinked primitive, an internal reroute or an unknown type
        inputs, widgets, output_count = shape
        hidden_inputs = _hidden(node_config.get("input"))
        for slot, input_name in inputs:
            if slot not in linked_to.get(index, set()) and input_name not in hidden_inputs:
                layout.inputs.append((index, slot))
        for widget, slot in widgets:
            if slot is None:
                layout.widgets.append((index, widget))
            elif slot not in linked_to.get(index, set()):  # a converted widget fed from outside
                converted.inputs.append((index, slot))
                converted.widgets.append((index, widget))
        output_config = node_config.get("output") if isinstance(node_config.get("output"), Mapping) else {}
        for slot in range(output_count):
            internal = slot in linked_from.get(index, set()) and slot not in external.get(index, set())
            option = output_config.get(str(slot))
            visible = option.get("visible", not internal) if isinstance(option, Mapping) else not internal
            if visible:
                layout.outputs.append((index, slot))
    layout.inputs.extend(converted.inputs)
    layout.widgets.extend(converted.widgets)
    return layout


def _external_outputs(items: Any) -> dict[int, set[int]]:
    # Older frontends saved the inner node object instead of its index here, and then never
    # matched it; only index entries count, as in the frontend.
    found: dict[int, set[int]] = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, list) and len(item) >= 2 and _whole(item[0]) is not None and _whole(item[1]) is not None:
            found.setdefault(int(item[0]), set()).add(int(item[1]))
    return found


def _hidden(options: Any) -> set[str]:
    if not isinstance(options, Mapping):
        return set()
    return {str(key) for key, value in options.items() if isinstance(value, Mapping) and value.get("visible") is False}


_Shape = tuple[list[tuple[int, str]], list[tuple[Widget, int | None]], int]


def _inner_shape(raw: Mapping[str, Any], index: int, links: list[_InnerLink], linked_from: dict[int, set[int]],
                 linked_to: dict[int, set[int]], external: dict[int, set[int]],
                 object_info: Mapping[str, Any]) -> _Shape | None:
    """(socket inputs as (slot, name), widgets with the input slot they were converted to, output count)."""
    node_type = raw["type"]
    entries = raw.get("inputs") or []
    if node_type == _PRIMITIVE:
        if index not in linked_from:
            return None  # the frontend skips a primitive that feeds nothing
        kind = next((link.type for link in links if link.origin == index), None)
        extras = ("control", "filter") if kind in ("INT", "COMBO") or isinstance(kind, list) else ()
        return [], [(Widget("value", kind if isinstance(kind, str) else "COMBO", None, extras), None)], 1
    if node_type == _REROUTE:
        if index in linked_to and index in linked_from and 0 not in external.get(index, set()):
            return None  # used only inside the group
        # The frontend names a reroute's input after the type that flows through it.
        kinds = [link.type for link in links if index in (link.origin, link.target) and isinstance(link.type, str)]
        return [(0, kinds[0] if kinds else "*")], [], 1
    info = object_info.get(node_type)
    if not isinstance(info, Mapping):
        return None
    sockets: list[tuple[int, str]] = []
    widgets: list[tuple[Widget, int | None]] = []
    slot_of = {entry.get("name"): slot for slot, entry in enumerate(entries) if isinstance(entry.get("name"), str)}
    widget_slot = {entry.get("name"): slot for slot, entry in enumerate(entries)
                   if isinstance(entry.get("widget"), Mapping) and entry["widget"].get("name") == entry.get("name")}
    specs = {widget.name: widget for widget in widget_specs(info)}
    # Newer frontends give every widget an input socket; there a socket marks a converted
    # widget only when something is linked into it.
    every_widget_has_socket = bool(specs) and all(name in widget_slot for name in specs)
    for name in _input_names(info):
        widget = specs.get(name)
        if widget is None:
            if as_widget(name, _input_spec(info, name)) is None:
                sockets.append((slot_of.get(name, len(sockets)), name))
            continue
        slot = widget_slot.get(name)
        linked = slot is not None and slot in linked_to.get(index, set())
        converted = slot is not None and (linked or not every_widget_has_socket or _entered(links, index, slot))
        widgets.append((widget, slot if converted else None))
    outputs = info.get("output")
    return sockets, widgets, len(outputs) if isinstance(outputs, list) else 0


def _entered(links: list[_InnerLink], index: int, slot: int) -> bool:
    return any(link.origin is None and link.target == index and link.target_slot == slot for link in links)


def _input_names(info: Mapping[str, Any]) -> list[str]:
    sections = info.get("input") if isinstance(info.get("input"), Mapping) else {}
    order = info.get("input_order") if isinstance(info.get("input_order"), Mapping) else {}
    return [name for section in ("required", "optional")
            for name in (order.get(section) or list(sections.get(section) or {}))]


def _input_spec(info: Mapping[str, Any], name: str) -> Any:
    sections = info.get("input") or {}
    return (sections.get("required") or {}).get(name, (sections.get("optional") or {}).get(name))


# --------------------------------------------------------------------------- building the canvas


def _inner_nodes(instance: Mapping[str, Any], instance_id: str, definition: Mapping[str, Any], layout: _Layout,
                 object_info: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Copies of the inner nodes with their execution ids, the instance's mode and widget values."""
    values = instance.get("widgets_values")
    saved: dict[int, Any] = {}
    if isinstance(values, list) and values:
        label = f"group node {instance_id} ({instance['type']!r})"
        saved = assign_positional(label, [widget for _, widget in layout.widgets], values)
    per_node: dict[int, dict[str, Any]] = {}
    for position, (index, widget) in enumerate(layout.widgets):
        if position in saved:
            per_node.setdefault(index, {})[widget.name] = saved[position]
    mode = instance.get("mode") if instance.get("mode") in (_MUTED, _BYPASSED) else None
    inner = []
    for index, raw in enumerate(definition["nodes"]):
        node = {key: copy.deepcopy(value) for key, value in raw.items() if key not in ("index", "id")}
        node["id"] = f"{instance_id}:{index}"
        node["inputs"] = [{**entry, "link": None} for entry in raw.get("inputs") or []]
        if mode is not None:
            node["mode"] = mode
        if index in per_node:
            node["widgets_values"] = _merged_values(raw, per_node[index], object_info)
        inner.append(node)
    return inner


def _merged_values(raw: Mapping[str, Any], assigned: dict[str, Any], object_info: Mapping[str, Any]) -> Any:
    """The instance's values for this inner node over its own saved ones, by widget name."""
    if raw["type"] == _PRIMITIVE:
        return [assigned["value"]]
    info = object_info.get(raw["type"])
    widgets = widget_specs(info) if isinstance(info, Mapping) else []
    own: dict[str, Any] = {}
    values = raw.get("widgets_values")
    if isinstance(values, list):
        try:
            positions = assign_positional("", widgets, values)
        except ConversionError:  # stale values of the definition: the instance's own win anyway
            positions = {}
        own = {widgets[position].name: value for position, value in positions.items()}
    elif isinstance(values, Mapping):
        own = dict(values)
    merged = {widget.name: widget.default for widget in widgets if widget.default is not None}
    return {**merged, **own, **assigned}


def _wire_inside(instance_id: str, name: str, inner: list[dict[str, Any]],
                 links: list[_InnerLink]) -> list[list[Any]]:
    """The definition's internal links as canvas links between the inner nodes."""
    made = []
    for number, link in enumerate(links):
        if link.origin is None:
            continue  # entered from outside: the outer link is re-pointed instead
        link_id = f"group {instance_id}:{number}"
        _attach(inner[link.target], link.target_slot, link_id, f"group node definition {name!r}")
        made.append([link_id, inner[link.origin]["id"], link.origin_slot, inner[link.target]["id"],
                     link.target_slot, link.type])
    return made


def _attach(node: dict[str, Any], slot: int, link_id: Any, where: str) -> None:
    entries = node["inputs"]
    if not 0 <= slot < len(entries):
        raise ConversionError(f"{where}: a link goes into input slot {slot} of inner node {node['id']} "
                              f"({node['type']!r}), which has {len(entries)} inputs")
    entries[slot]["link"] = link_id


def _outer_links(items: Any) -> list[list[Any]]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise ConversionError(f"the workflow's 'links' must be a list of links, got {type_name(items)} {shown(items)}")
    parsed = []
    for item in items:
        if item is None:
            continue
        if isinstance(item, Mapping):
            item = [item.get(key) for key in ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")]
        if not isinstance(item, list) or len(item) < 5:
            raise ConversionError(f"malformed link {shown(item)}: expected [id, origin node, origin slot, "
                                  "target node, target slot, type]")
        parsed.append(list(item))
    return parsed


def _repoint(link: list[Any], instances: Mapping[str, tuple[Mapping[str, Any], _Layout, list[dict]]]) -> list[Any]:
    """An outer link with a group instance at either end moved to the inner slot it stands for."""
    link = list(link)
    origin, target = str(link[1]), str(link[3])
    if origin in instances:
        raw, layout, inner = instances[origin]
        index, inner_slot = _inner_slot(link, link[2], layout.outputs, f"leaves output {shown(link[2])} of "
                                        f"group node {origin} ({raw['type']!r}), which has", "outputs")
        link[1], link[2] = inner[index]["id"], inner_slot
    if target in instances:
        raw, layout, inner = instances[target]
        index, inner_slot = _inner_slot(link, link[4], layout.inputs, f"enters input {shown(link[4])} of "
                                        f"group node {target} ({raw['type']!r}), which has", "inputs")
        _attach(inner[index], inner_slot, link[0], f"group node {target} ({raw['type']!r})")
        link[3], link[4] = inner[index]["id"], inner_slot
    return link


def _inner_slot(link: list[Any], slot_value: Any, slots: list[tuple[int, int]], where: str,
                noun: str) -> tuple[int, int]:
    """(inner node index, inner slot) for a group instance's outer slot; a slot it lacks is an error."""
    slot = _whole(slot_value)
    if slot is None or not 0 <= slot < len(slots):
        raise ConversionError(f"link {shown(link)} {where} {len(slots)} {noun}")
    return slots[slot]
