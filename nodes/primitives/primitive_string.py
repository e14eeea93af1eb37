"""PrimitiveString: a constant single-line string."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import String, node


@node(id="PrimitiveString", category="utils/primitive", display="String")
def primitive_string(value: Annotated[str, String("")]) -> str:
    """Output a constant string."""
    return value
