"""The rules of ComfyUI's API prompt format that every part of Flowmill must agree on.

What counts as a link, and which output type may feed which input. Kept free of torch and
aiohttp so the UI converter, the graph builder, validation and the executor share one
definition instead of each carrying its own.
"""

from __future__ import annotations

from typing import Any

ANY = "*"


def is_link(value: Any) -> bool:
    """A 2-element list [source_id, slot] is a link; any other value is a literal.

    Ids are strings (some clients save ints); the slot is a whole number. `True` is an int
    to Python but never a slot: `["5", True]` is a literal.
    """
    if not isinstance(value, list) or len(value) != 2:
        return False
    source, slot = value
    if isinstance(source, bool) or not isinstance(source, (str, int)) or isinstance(slot, bool):
        return False
    return isinstance(slot, int) or (isinstance(slot, float) and slot.is_integer())


def normalise_link(value: list[Any]) -> list[Any]:
    """A link as the executor uses it: [str id, int slot]."""
    return [str(value[0]), int(value[1])]


def types_compatible(received: str, expected: str) -> bool:
    """True when an output of type `received` may feed an input of type `expected`.

    `*` (and an empty type, as the canvas saves untyped reroutes) matches anything, and
    comma-separated unions (`IMAGE,MASK`) match when the two sides share a member, as in
    ComfyUI's `validate_node_input`.
    """
    if received == expected or received in (ANY, "") or expected in (ANY, ""):
        return True
    received_set = {part.strip() for part in received.split(",")}
    expected_set = {part.strip() for part in expected.split(",")}
    return ANY in received_set or ANY in expected_set or bool(received_set & expected_set)
