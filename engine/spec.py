"""The one internal description of a node type, whatever form declared it.

Flowmill's `@node` functions (engine/node_api.py) and ComfyUI V1 classes
(engine/comfy_v1.py) both compile to a `NodeSpec`. Validation, the executor and the
`/object_info` export read only this form, so there is a single source of truth for input
names, widget bounds, output types and behaviour flags.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

InputKind = Literal["required", "optional", "hidden"]

# Hidden inputs a node may ask for, with ComfyUI's names.
HIDDEN_PROMPT = "PROMPT"
HIDDEN_DYNPROMPT = "DYNPROMPT"
HIDDEN_EXTRA_PNGINFO = "EXTRA_PNGINFO"
HIDDEN_UNIQUE_ID = "UNIQUE_ID"


@dataclass(frozen=True)
class InputSpec:
    """One input socket or widget.

    `type` is the wire type ("IMAGE", "INT", ...; "COMBO" for a choice list). `options` is
    the ComfyUI option dict exported as-is in `/object_info` (default, min, max, step,
    tooltip, multiline, control_after_generate, image_upload, forceInput, ...).
    `choices` is a static combo list; `choice_source` names a folder whose listing fills
    the combo when the schema is requested ("checkpoints", "input", ...).
    """

    name: str
    type: str
    kind: InputKind = "required"
    options: Mapping[str, Any] = field(default_factory=dict)
    choices: tuple[str, ...] | None = None
    choice_source: str | None = None
    lazy: bool = False

    @property
    def is_combo(self) -> bool:
        return self.type == "COMBO"

    @property
    def default(self) -> Any:
        return self.options.get("default")


@dataclass(frozen=True)
class OutputSpec:
    type: str
    name: str
    is_list: bool = False
    tooltip: str | None = None


@dataclass(frozen=True)
class NodeHooks:
    """The callables behind one node instance.

    `run(**inputs)` computes the outputs; when `wants_context` is set the executor passes a
    `NodeContext` as the first positional argument. Each hook may return an awaitable.

    - `run` returns a tuple of output values or a `NodeOutput`.
    - `check_lazy(**inputs)` returns the names of lazy inputs still needed (unevaluated
      lazy inputs arrive as None).
    - `fingerprint(**constant_inputs)` returns a value folded into the cache key; NaN
      means "always changed" (ComfyUI's IS_CHANGED).
    - `validate(**inputs)` returns True or an error message (ComfyUI's VALIDATE_INPUTS).
    - `estimate(**inputs)` returns the `TensorEstimate` of each output (engine/budget.py)
      from literal inputs and the estimates of linked ones; None where unknown. It takes a
      `NodeContext` first only when `estimate_wants_context` is set (its own first parameter is
      annotated so), whether or not the node's `run` does.
    """

    run: Callable[..., Any]
    wants_context: bool = False
    check_lazy: Callable[..., list[str] | Awaitable[list[str]]] | None = None
    fingerprint: Callable[..., Any] | None = None
    validate: Callable[..., Any] | None = None
    estimate: Callable[..., Any] | None = None
    estimate_wants_context: bool = False


@dataclass(frozen=True)
class NodeSpec:
    """A registered node type.

    `make_hooks()` returns the callables for one node instance. Flowmill nodes are stateless
    and return the same hooks each time; ComfyUI V1 classes build a class instance, and the
    executor keeps one per (node id, class) across prompts when `keeps_instance` is set,
    as ComfyUI does.

    `validated_inputs` names inputs that the node's own `validate` checks, so the built-in
    range and combo checks skip them; `validate_wants_types` is ComfyUI's `input_types`
    parameter of VALIDATE_INPUTS, which also turns off link type checking.

    `has_estimate`: the node declares how big its outputs will be, so validation can hold
    it to the tensor budget. `takes_undeclared_inputs`: the node's function takes
    `**kwargs`, so a link into an input it does not declare is passed on and its source
    runs (ComfyUI's variadic V1 nodes).
    """

    id: str
    display_name: str
    category: str
    description: str
    python_module: str
    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]
    make_hooks: Callable[[], NodeHooks]
    output_node: bool = False
    input_is_list: bool = False
    pure: bool = True
    not_idempotent: bool = False
    keeps_instance: bool = False
    has_fingerprint: bool = False
    has_validate: bool = False
    validated_inputs: frozenset[str] = frozenset()
    validate_wants_types: bool = False
    has_estimate: bool = False
    takes_undeclared_inputs: bool = False
    deprecated: bool = False
    experimental: bool = False
    version: int = 1  # bumped, with a migration, when a node's inputs change

    def input(self, name: str) -> InputSpec | None:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        return None


@dataclass
class NodeOutput:
    """What a node returns when it needs more than plain output values.

    - `values`: one value per output socket (may be links into `expand`);
    - `ui`: the dict sent in the `executed` message and stored in history, e.g.
      `{"images": [{"filename", "subfolder", "type"}]}`;
    - `expand`: an API-format subgraph to splice in (ComfyUI node expansion);
    """

    values: tuple[Any, ...] = ()
    ui: dict[str, Any] | None = None
    expand: dict[str, Any] | None = None


@dataclass(frozen=True)
class ExecutionBlocker:
    """An output value that blocks every consumer (ComfyUI semantics).

    With `message=None` consumers are skipped silently; otherwise the first consumer reports
    an `execution_error` carrying the message and the block continues silently downstream.
    """

    message: str | None = None
