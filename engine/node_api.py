"""The public surface for node authors: `@node`, widget specs, socket types, `NodeContext`.

A node is one decorated function whose annotated signature is the schema:

    @node(id="ImageInvert", category="image")
    def image_invert(image: Image) -> Image:
        '''Invert the colours of an image.'''
        return 1.0 - image

- Sockets are annotated with socket types (`image: Image`); widgets with
  `Annotated[int, Int(...)]`, `Annotated[float, Float(...)]`, `Annotated[str, String(...)]`,
  `Annotated[bool, Boolean(...)]`, `Literal[...]` or `Annotated[str, Choice(...)]` (combos)
  and `Annotated[int, Seed()]`. A parameter defaulting to None is optional.
- `estimate=` says how big the outputs will be (`TensorEstimate`), so an oversized graph
  is refused at validation instead of failing to allocate.
- `Lazy[T]` marks an input that is evaluated only when `check_lazy` asks for it.
- The return annotation names the outputs: one socket type, a NamedTuple of them (field
  names become output names), or None for a node without socket outputs. A node that
  returns a `NodeOutput` (ui, expansion) writes `-> NodeOutput | T`, or `-> NodeOutput`
  when it has no socket outputs.
- A first parameter annotated `NodeContext` receives the context; its hooks
  (`check_lazy`, `fingerprint`, `validate`) then receive it first too.

Everything else in engine/ is private to the executor and may change; the declaration is
compiled by engine/declaration.py and the widget specs live in engine/widgets.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from engine.budget import TensorEstimate
from engine.context import NodeContext
from engine.declaration import Declaration, NodeDeclarationError, compile_node
from engine.paths import UnsafePathError
from engine.spec import ExecutionBlocker, NodeOutput
from engine.types import (
    AnyValue,
    Conditioning,
    ControlNet,
    Guider,
    Image,
    Latent,
    Mask,
    Model,
    Noise,
    Sampler,
    Sigmas,
    Socket,
    TextEncoder,
    Vae,
    VelocityRefiner,
)
from engine.widgets import Boolean, Choice, Float, Input, Int, Lazy, Seed, String

__all__ = [
    "AnyValue", "Boolean", "Choice", "Conditioning", "ControlNet", "ExecutionBlocker", "Float",
    "Guider", "Image", "Input", "Int", "Latent", "Lazy", "Mask", "Model", "NodeContext",
    "NodeDeclarationError", "NodeOutput", "Noise", "Sampler", "Seed", "Sigmas", "Socket", "String",
    "TensorEstimate", "TextEncoder", "UnsafePathError", "Vae", "VelocityRefiner", "node",
]

def node(
    *,
    id: str,
    category: str,
    display: str | None = None,
    version: int = 1,
    output: bool = False,
    pure: bool = True,
    input_is_list: bool = False,
    output_is_list: bool | Sequence[bool] = False,
    check_lazy: Callable[..., Any] | None = None,
    fingerprint: Callable[..., Any] | None = None,
    validate: Callable[..., Any] | None = None,
    estimate: Callable[..., Any] | None = None,
    deprecated: bool = False,
    experimental: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a node. The decorated function is returned unchanged, with `.node_spec` set.

    - `version`: bump it, with a migration, when the inputs change (the id never changes).
    - `output`: an output node (saves or shows something; a root of execution).
    - `pure=False`: the node re-runs on every prompt (randomness, clocks, external state).
    - `input_is_list` / `output_is_list`: ComfyUI's list semantics.
    - `check_lazy`: required when any input is `Lazy[...]`.
    - `fingerprint`: folded into the cache key (e.g. a file hash); NaN means always changed.
    - `validate`: returns True or an error message; the built-in range and combo checks
      skip the inputs it names as parameters.
    - `estimate`: how big the outputs will be, so validation can refuse a graph over the
      tensor budget before it is queued (engine/budget.py). It receives literal inputs as
      values and linked inputs as the `TensorEstimate` of their source (None when unknown),
      and returns one `TensorEstimate` (or None) per output. Declare it on every node that
      creates or resizes tensors.
    Hooks receive only the inputs they name as parameters (all of them with **kwargs).
    """
    declared = Declaration(id, category, display, version, output, pure, input_is_list, output_is_list,
                            check_lazy, fingerprint, validate, deprecated, experimental, estimate)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.node_spec = compile_node(fn, declared)  # type: ignore[attr-defined]
        return fn

    return decorate
