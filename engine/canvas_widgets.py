"""How a canvas node's positional `widgets_values` line up with its node type's widgets.

Owns the rule that the UI converter (`engine.convert`) and the legacy group-node expander
(`engine.group_nodes`) share: which inputs of an `/object_info` entry are widgets, in what
order the frontend saves their values, which extra values it may save after one (the seed
control, a combo's filter text, an upload button), and how a saved list is matched to them.
It also owns `ConversionError`, which every canvas conversion problem becomes.

Pure data in, data out: imports nothing from Flowmill and keeps no module-level mutable state.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# The seed-control keywords; files from before ComfyUI's combo saved a boolean "randomize"
# toggle in the same place, which the frontend reads as randomize (true) or fixed (false).
CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})
_SCALAR_WIDGETS = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN"})


class ConversionError(ValueError):
    """A UI workflow that cannot be turned into an API prompt; the message names the node."""


@dataclass(frozen=True)
class Widget:
    name: str
    kind: str  # INT, FLOAT, STRING, BOOLEAN or COMBO
    default: Any
    extras: tuple[str, ...]  # values the frontend may save after this one: control, filter, upload


def shown(value: Any, limit: int = 80) -> str:
    """A short JSON rendering of a value for error messages."""
    try:
        text = json.dumps(value, default=repr)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def type_name(value: Any) -> str:
    """The JSON name of a value's type, as a canvas file author would call it."""
    for kind, name in ((bool, "boolean"), (int, "number"), (float, "number"), (str, "string"),
                       (Mapping, "object"), (list, "list"), (type(None), "null")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def widget_specs(info: Mapping[str, Any]) -> list[Widget]:
    """The node's widgets in canvas order: required then optional, each in input_order."""
    sections = info.get("input") if isinstance(info.get("input"), Mapping) else {}
    order = info.get("input_order") if isinstance(info.get("input_order"), Mapping) else {}
    widgets: list[Widget] = []
    for section in ("required", "optional"):
        entries = sections.get(section) or {}
        for name in order.get(section) or list(entries):
            widget = as_widget(name, entries.get(name))
            if widget is not None:
                widgets.append(widget)
    return widgets


def as_widget(name: str, spec: Any) -> Widget | None:
    """The widget an input spec makes on the canvas, or None for a socket-only input."""
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
    return Widget(name, "COMBO" if choices is not None else str(kind), default, extras)


def assign_positional(label: str, widgets: Sequence[Widget], values: Sequence[Any]) -> dict[int, Any]:
    """{widget position: saved value} for a positional `widgets_values` list.

    Optional extra values are skipped only while more values remain than the remaining
    widgets need, so the count always reconciles. Values left over at the end are ignored,
    as the frontend ignores them (an old SaveImage saved an empty second value), unless a
    value sits under a widget it cannot belong to: then the columns are shifted, and the
    error names the first value that does not fit rather than the last one.
    """
    named: dict[int, Any] = {}
    index = 0
    for position, widget in enumerate(widgets):
        if index >= len(values):
            break
        named[position] = values[index]
        index += 1
        needed = len(widgets) - position - 1
        for extra in widget.extras:  # a missing control value means no filter value either
            if len(values) - index <= needed or not looks_extra(values[index], extra):
                break
            index += 1
    if index < len(values):
        misfit = next((position for position, value in named.items() if not fits(widgets[position], value)), None)
        if misfit is not None:
            widget = widgets[misfit]
            raise ConversionError(
                f"{label}: its {len(values)} widget values do not line up with its {len(widgets)} widgets "
                f"{[item.name for item in widgets]}: {shown(named[misfit])} cannot be the value of "
                f"'{widget.name}' ({widget.kind}); the saved values are {shown(list(values), 300)}"
            )
    return named


def looks_extra(value: Any, extra: str) -> bool:
    """Whether `value` can be the frontend's extra value of this kind."""
    if extra == "control":  # a keyword, or the boolean of files older than the combo
        return isinstance(value, bool) or (isinstance(value, str) and value in CONTROL_VALUES)
    return isinstance(value, str) or value is None  # filter text, upload button value


def fits(widget: Widget, value: Any) -> bool:
    """Whether a saved value has a type the widget can hold (None fits anything)."""
    if value is None:
        return True
    if widget.kind in ("INT", "FLOAT"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if widget.kind == "BOOLEAN":
        return isinstance(value, bool)
    if widget.kind == "STRING":
        return isinstance(value, str)
    return isinstance(value, (str, int, float, bool, list))  # a combo; lists for multiselect
