"""PrimitiveInt: a constant integer."""

from __future__ import annotations

import sys
from typing import Annotated

from engine.node_api import Int, node


@node(id="PrimitiveInt", category="utils/primitive", display="Int")
def primitive_int(value: Annotated[int, Int(0, min=-sys.maxsize, max=sys.maxsize)]) -> int:
    """Output a constant integer."""
    return value
