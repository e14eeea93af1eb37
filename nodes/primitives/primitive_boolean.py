"""PrimitiveBoolean: a constant true/false value."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import Boolean, node


@node(id="PrimitiveBoolean", category="utils/primitive", display="Boolean")
def primitive_boolean(value: Annotated[bool, Boolean(False)]) -> bool:
    """Output a constant boolean."""
    return value
