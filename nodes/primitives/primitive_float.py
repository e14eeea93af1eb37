"""PrimitiveFloat: a constant float."""

from __future__ import annotations

import sys
from typing import Annotated

from engine.node_api import Float, node


def _estimate(value: float) -> float:
    # The constant is known before the node runs, so a scale wired from it is still budgeted.
    return value


@node(id="PrimitiveFloat", category="utils/primitive", display="Float", estimate=_estimate)
def primitive_float(value: Annotated[float, Float(0.0, min=-sys.maxsize, max=sys.maxsize)]) -> float:
    """Output a constant float."""
    return value
