"""PrimitiveStringMultiline: a constant string edited in a multi-line box."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import String, node


@node(id="PrimitiveStringMultiline", category="utils/primitive", display="String (Multiline)")
def primitive_string_multiline(value: Annotated[str, String("", multiline=True)]) -> str:
    """Output a constant string typed in a multi-line text box."""
    return value
