"""Widget specs for node declarations: Int, Float, String, Boolean, Choice, Seed, Input, Lazy.

Plain frozen data read by engine/declaration.py when it compiles a node's signature; node
authors import them through engine/node_api.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

MAX_SEED = 0xFFFFFFFFFFFFFFFF
# ComfyUI's bounds for unbounded INT/FLOAT widgets, so exported schemas stay finite.
INT_LIMIT = 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True)
class Int:
    default: int = 0
    min: int = -INT_LIMIT
    max: int = INT_LIMIT
    step: int = 1
    tooltip: str | None = None
    display: str | None = None  # "number" or "slider"
    control_after_generate: bool = False  # ComfyUI's fixed/increment/decrement/randomize companion


@dataclass(frozen=True)
class Float:
    default: float = 0.0
    min: float = -1e10
    max: float = 1e10
    step: float = 0.01
    round: float | None = None
    tooltip: str | None = None
    display: str | None = None


@dataclass(frozen=True)
class String:
    default: str = ""
    multiline: bool = False
    placeholder: str | None = None
    tooltip: str | None = None


@dataclass(frozen=True)
class Boolean:
    default: bool = False
    label_on: str | None = None
    label_off: str | None = None
    tooltip: str | None = None


@dataclass(frozen=True)
class Choice:
    """A combo: static `options`, or the listing of `source` ("checkpoints", "input", ...)."""

    options: Sequence[str] = ()
    source: str | None = None
    default: str | None = None
    upload: str | None = None  # "image" adds ComfyUI's image_upload button
    tooltip: str | None = None


@dataclass(frozen=True)
class Seed:
    """An INT seed widget with ComfyUI's `control_after_generate` companion value."""

    default: int = 0
    tooltip: str | None = None


@dataclass(frozen=True)
class Input:
    """Extra metadata for a socket input: a tooltip, or a widget forced to be a socket."""

    tooltip: str | None = None
    force_input: bool = False


@dataclass(frozen=True)
class _LazyMarker:
    pass


class Lazy:
    """`Lazy[Image]`: evaluated only if the node's `check_lazy` hook names it."""

    def __class_getitem__(cls, item: Any) -> Any:
        return Annotated[item, _LazyMarker()]
