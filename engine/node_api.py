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
- `Lazy[T]` marks an input that is evaluated only when `check_lazy` asks for it.
- The return annotation names the outputs: one socket type, a NamedTuple of them (field
  names become output names), or None for a node without socket outputs. A node that
  returns a `NodeOutput` (ui, expansion) writes `-> NodeOutput | T`, or `-> NodeOutput`
  when it has no socket outputs.
- A first parameter annotated `NodeContext` receives the context; its hooks
  (`check_lazy`, `fingerprint`, `validate`) then receive it first too.

Everything else in engine/ is private to the executor and may change.
"""

from __future__ import annotations

import functools
import inspect
import operator
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from engine.context import NodeContext
from engine.paths import UnsafePathError
from engine.spec import ExecutionBlocker, InputSpec, NodeHooks, NodeOutput, NodeSpec, OutputSpec
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
)

__all__ = [
    "AnyValue", "Boolean", "Choice", "Conditioning", "ControlNet", "ExecutionBlocker", "Float",
    "Guider", "Image", "Input", "Int", "Latent", "Lazy", "Mask", "Model", "NodeContext",
    "NodeDeclarationError", "NodeOutput", "Noise", "Sampler", "Seed", "Sigmas", "Socket", "String",
    "TextEncoder", "UnsafePathError", "Vae", "node",
]

MAX_SEED = 0xFFFFFFFFFFFFFFFF
# ComfyUI's bounds for unbounded INT/FLOAT widgets, so exported schemas stay finite.
INT_LIMIT = 0xFFFFFFFFFFFFFFFF


class NodeDeclarationError(TypeError):
    """A node declaration breaks a convention; the message names the node and parameter."""


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


_PLAIN_WIDGETS = {int: ("INT", Int), float: ("FLOAT", Float), str: ("STRING", String), bool: ("BOOLEAN", Boolean)}
_PLAIN_OUTPUTS = {int: "INT", float: "FLOAT", str: "STRING", bool: "BOOLEAN"}


@dataclass
class _Parsed:
    """An annotation taken apart: the bare type and the metadata that matters here."""

    base: Any
    socket: Socket | None = None
    widget: Any = None
    input_meta: Input | None = None
    lazy: bool = False
    optional: bool = False
    extras: list[Any] = field(default_factory=list)


def _parse_annotation(annotation: Any) -> _Parsed:
    parsed = _Parsed(base=annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) == 1 and len(members) < len(typing.get_args(annotation)):
            inner = _parse_annotation(members[0])
            inner.optional = True
            return inner
    if origin is Annotated:
        base, *metadata = typing.get_args(annotation)
        parsed.base = base
        for item in metadata:
            if isinstance(item, Socket):
                parsed.socket = item
            elif isinstance(item, (Int, Float, String, Boolean, Choice, Seed)):
                parsed.widget = item
            elif isinstance(item, Input):
                parsed.input_meta = item
            elif isinstance(item, _LazyMarker):
                parsed.lazy = True
            else:
                parsed.extras.append(item)
    return parsed


def _clean(options: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in options.items() if value is not None}


def _widget_input(where: str, name: str, parsed: _Parsed, default: Any) -> InputSpec:
    """Build the InputSpec for a widget parameter, or raise a declaration error."""
    widget = parsed.widget
    has_default = default is not inspect.Parameter.empty and default is not None
    if typing.get_origin(parsed.base) is Literal:
        options = tuple(str(option) for option in typing.get_args(parsed.base))
        chosen = default if has_default else options[0]
        tooltip = widget.tooltip if isinstance(widget, Choice) else None
        return InputSpec(name, "COMBO", options=_clean({"default": chosen, "tooltip": tooltip}), choices=options)
    if isinstance(widget, Choice):
        if bool(widget.options) == bool(widget.source):
            raise NodeDeclarationError(f"{where}: Choice for {name!r} needs exactly one of options= or source=")
        fallback = default if has_default else None
        chosen = widget.default if widget.default is not None else fallback
        upload = True if widget.upload else None
        options = _clean({"default": chosen, "tooltip": widget.tooltip, "image_upload": upload})
        if widget.options:
            return InputSpec(name, "COMBO", options=options, choices=tuple(widget.options))
        return InputSpec(name, "COMBO", options=options, choice_source=widget.source)
    if isinstance(widget, Seed):
        options = {"default": widget.default, "min": 0, "max": MAX_SEED, "control_after_generate": True}
        return InputSpec(name, "INT", options=_clean({**options, "tooltip": widget.tooltip}))
    if widget is None and parsed.base in _PLAIN_WIDGETS:
        if not has_default:
            raise NodeDeclarationError(
                f"{where}: widget {name!r} needs a default or an {_PLAIN_WIDGETS[parsed.base][1].__name__}(...) spec"
            )
        widget = _PLAIN_WIDGETS[parsed.base][1](default=default)
    if isinstance(widget, Int):
        options = {"default": widget.default, "min": widget.min, "max": widget.max, "step": widget.step,
                   "tooltip": widget.tooltip, "display": widget.display,
                   "control_after_generate": True if widget.control_after_generate else None}
        return InputSpec(name, "INT", options=_clean(options))
    if isinstance(widget, Float):
        options = {"default": widget.default, "min": widget.min, "max": widget.max, "step": widget.step,
                   "round": widget.round, "tooltip": widget.tooltip, "display": widget.display}
        return InputSpec(name, "FLOAT", options=_clean(options))
    if isinstance(widget, String):
        options = {"default": widget.default, "multiline": widget.multiline or None,
                   "placeholder": widget.placeholder, "tooltip": widget.tooltip}
        return InputSpec(name, "STRING", options=_clean(options))
    if isinstance(widget, Boolean):
        options = {"default": widget.default, "label_on": widget.label_on, "label_off": widget.label_off,
                   "tooltip": widget.tooltip}
        return InputSpec(name, "BOOLEAN", options=_clean(options))
    raise NodeDeclarationError(
        f"{where}: parameter {name!r} has annotation {parsed.base!r}, which is neither a socket type "
        f"(Image, Latent, ...) nor a widget (Int, Float, String, Boolean, Choice, Seed, Literal)"
    )


def _input_spec(where: str, parameter: inspect.Parameter, annotation: Any) -> InputSpec:
    parsed = _parse_annotation(annotation)
    optional = parsed.optional or parameter.default is None
    kind = "optional" if optional else "required"
    if parsed.socket is not None:
        meta = parsed.input_meta or Input()
        options = _clean({"tooltip": meta.tooltip, "lazy": True if parsed.lazy else None})
        spec = InputSpec(parameter.name, parsed.socket.name, options=options, lazy=parsed.lazy)
    else:
        spec = _widget_input(where, parameter.name, parsed, parameter.default)
        if parsed.lazy:
            spec = InputSpec(spec.name, spec.type, options={**spec.options, "lazy": True}, choices=spec.choices,
                             choice_source=spec.choice_source, lazy=True)
        if parsed.input_meta and parsed.input_meta.force_input:
            spec = InputSpec(spec.name, spec.type, options={**spec.options, "forceInput": True},
                             choices=spec.choices, choice_source=spec.choice_source, lazy=spec.lazy)
    return InputSpec(spec.name, spec.type, kind, spec.options, spec.choices, spec.choice_source, spec.lazy)


def _output_type(where: str, annotation: Any) -> str:
    parsed = _parse_annotation(annotation)
    if parsed.socket is not None:
        return parsed.socket.name
    if parsed.base in _PLAIN_OUTPUTS:
        return _PLAIN_OUTPUTS[parsed.base]
    raise NodeDeclarationError(f"{where}: return annotation {annotation!r} is not a socket type")


def _strip_node_output(annotation: Any) -> Any:
    """`NodeOutput | T` declares the outputs T; a bare `NodeOutput` declares none."""
    if annotation is NodeOutput:
        return None
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not NodeOutput]
        if len(members) < len(typing.get_args(annotation)):
            return functools.reduce(operator.or_, members) if len(members) > 1 else members[0]
    return annotation


def _output_specs(where: str, annotation: Any, output_is_list: bool | Sequence[bool]) -> tuple[OutputSpec, ...]:
    annotation = _strip_node_output(annotation)
    if annotation is None or annotation is type(None):
        return ()
    if isinstance(annotation, type) and issubclass(annotation, tuple) and hasattr(annotation, "_fields"):
        hints = typing.get_type_hints(annotation, include_extras=True)
        pairs = [(name, _output_type(f"{where} output {name!r}", hints[name])) for name in annotation._fields]
    else:
        wire = _output_type(where, annotation)
        pairs = [(wire, wire)]
    flags = [output_is_list] * len(pairs) if isinstance(output_is_list, bool) else list(output_is_list)
    if len(flags) != len(pairs):
        raise NodeDeclarationError(f"{where}: output_is_list has {len(flags)} flags for {len(pairs)} outputs")
    return tuple(OutputSpec(wire, name, is_list) for (name, wire), is_list in zip(pairs, flags, strict=True))


def _normalise_result(result: Any, n_outputs: int) -> Any:
    """Turn what a node function returned into a tuple of outputs or a NodeOutput."""
    if isinstance(result, NodeOutput):
        return result
    if n_outputs == 0:
        return ()
    if n_outputs == 1:
        return (result,)
    return tuple(result)


def _wrap_run(fn: Callable[..., Any], n_outputs: int) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            return _normalise_result(await fn(*args, **kwargs), n_outputs)

        return run_async

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        return _normalise_result(fn(*args, **kwargs), n_outputs)

    return run


def _hook_parameter_names(hook: Callable[..., Any], wants_context: bool) -> frozenset[str]:
    names = list(inspect.signature(hook).parameters)
    return frozenset(names[1:] if wants_context else names)


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
    deprecated: bool = False,
    experimental: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a node. The decorated function is returned unchanged, with `.node_spec` set.

    - `output`: an output node (saves or shows something; a root of execution).
    - `pure=False`: the node re-runs on every prompt (randomness, clocks, external state).
    - `input_is_list` / `output_is_list`: ComfyUI's list semantics.
    - `check_lazy`: required when any input is `Lazy[...]`.
    - `fingerprint`: folded into the cache key (e.g. a file hash); NaN means always changed.
    - `validate`: returns True or an error message; the built-in range and combo checks
      skip the inputs it names as parameters.
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        where = f"node {id!r} ({fn.__module__}.{fn.__qualname__})"
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except Exception as error:  # an unresolvable annotation: say which node has it
            raise NodeDeclarationError(f"{where}: cannot resolve annotations: {error}") from error
        parameters = list(inspect.signature(fn).parameters.values())
        wants_context = bool(parameters) and hints.get(parameters[0].name) is NodeContext
        if wants_context:
            parameters = parameters[1:]
        for parameter in parameters:
            if parameter.name not in hints:
                raise NodeDeclarationError(f"{where}: parameter {parameter.name!r} has no type annotation")
            if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                raise NodeDeclarationError(f"{where}: *args and **kwargs are not allowed in a node signature")
        if "return" not in hints:
            raise NodeDeclarationError(f"{where}: missing return annotation (use -> None for no outputs)")
        inputs = tuple(_input_spec(where, parameter, hints[parameter.name]) for parameter in parameters)
        outputs = _output_specs(where, hints["return"], output_is_list)
        if any(spec.lazy for spec in inputs) and check_lazy is None:
            raise NodeDeclarationError(f"{where}: has Lazy inputs but no check_lazy= hook to say which it needs")
        doc = inspect.getdoc(fn) or ""
        hooks = NodeHooks(
            run=_wrap_run(fn, len(outputs)),
            wants_context=wants_context,
            check_lazy=check_lazy,
            fingerprint=fingerprint,
            validate=validate,
        )
        fn.node_spec = NodeSpec(  # type: ignore[attr-defined]
            id=id,
            display_name=display or id,
            category=category,
            description=doc.strip(),
            python_module=fn.__module__,
            inputs=inputs,
            outputs=outputs,
            make_hooks=lambda: hooks,
            output_node=output,
            input_is_list=input_is_list,
            pure=pure,
            has_fingerprint=fingerprint is not None,
            has_validate=validate is not None,
            validated_inputs=_hook_parameter_names(validate, wants_context) if validate else frozenset(),
            deprecated=deprecated,
            experimental=experimental,
        )
        fn.node_version = version  # type: ignore[attr-defined]
        return fn

    return decorate
