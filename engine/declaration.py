"""Compiles a `@node` function's signature into a NodeSpec.

The annotated signature is the schema: socket types and widget specs become InputSpecs, the
return annotation becomes OutputSpecs, and every broken convention raises a
NodeDeclarationError that names the node and the parameter. engine/node_api.py is the
public front of this module.
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
from engine.spec import InputSpec, NodeHooks, NodeOutput, NodeSpec, OutputSpec
from engine.types import Socket
from engine.widgets import MAX_SEED, Boolean, Choice, Float, Input, Int, Seed, String, _LazyMarker


class NodeDeclarationError(TypeError):
    """A node declaration breaks a convention; the message names the node and parameter."""


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


@dataclass(frozen=True)
class Declaration:
    """The `@node(...)` arguments, kept together while a function is compiled."""

    id: str
    category: str
    display: str | None
    version: int
    output: bool
    pure: bool
    input_is_list: bool
    output_is_list: bool | Sequence[bool]
    check_lazy: Callable[..., Any] | None
    fingerprint: Callable[..., Any] | None
    validate: Callable[..., Any] | None
    deprecated: bool
    experimental: bool
    estimate: Callable[..., Any] | None = None


def _signature(where: str, fn: Callable[..., Any]) -> tuple[bool, list[inspect.Parameter], dict[str, Any]]:
    """(takes a NodeContext first, the input parameters, resolved hints), or a declaration error."""
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
    return wants_context, parameters, hints


def _takes_context(hook: Callable[..., Any] | None) -> bool:
    """Whether a hook's first parameter is annotated NodeContext (a size estimate may want the
    folders, e.g. LoadImage reading a file's header, while most estimates do not)."""
    if hook is None:
        return False
    parameters = list(inspect.signature(hook).parameters.values())
    return bool(parameters) and typing.get_type_hints(hook).get(parameters[0].name) is NodeContext


def compile_node(fn: Callable[..., Any], declared: Declaration) -> NodeSpec:
    where = f"node {declared.id!r} ({fn.__module__}.{fn.__qualname__})"
    wants_context, parameters, hints = _signature(where, fn)
    inputs = tuple(_input_spec(where, parameter, hints[parameter.name]) for parameter in parameters)
    outputs = _output_specs(where, hints["return"], declared.output_is_list)
    if any(item.lazy for item in inputs) and declared.check_lazy is None:
        raise NodeDeclarationError(f"{where}: has Lazy inputs but no check_lazy= hook to say which it needs")
    hooks = NodeHooks(run=_wrap_run(fn, len(outputs)), wants_context=wants_context, check_lazy=declared.check_lazy,
                      fingerprint=declared.fingerprint, validate=declared.validate, estimate=declared.estimate,
                      estimate_wants_context=_takes_context(declared.estimate))
    validate = declared.validate
    return NodeSpec(
        id=declared.id,
        display_name=declared.display or declared.id,
        category=declared.category,
        description=(inspect.getdoc(fn) or "").strip(),
        python_module=fn.__module__,
        inputs=inputs,
        outputs=outputs,
        make_hooks=lambda: hooks,
        output_node=declared.output,
        input_is_list=declared.input_is_list,
        pure=declared.pure,
        has_fingerprint=declared.fingerprint is not None,
        has_validate=validate is not None,
        validated_inputs=_hook_parameter_names(validate, wants_context) if validate else frozenset(),
        has_estimate=declared.estimate is not None,
        deprecated=declared.deprecated,
        experimental=declared.experimental,
        version=declared.version,
    )
