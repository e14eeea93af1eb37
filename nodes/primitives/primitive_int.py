"""PrimitiveInt: a constant integer."""

from __future__ import annotations

import sys
from typing import Annotated

from engine.node_api import Int, node


def _estimate(value: int) -> int:
    # The constant is known before the node runs, so a size wired from it is still budgeted.
    return value


@node(id="PrimitiveInt", category="utils/primitive", display="Int", estimate=_estimate)
def primitive_int(value: Annotated[int, Int(0, min=-sys.maxsize, max=sys.maxsize)]) -> int:
    """Output a constant integer."""
    return value
