"""ComfyUI V1 custom-node classes compiled to `NodeSpec`s, and the hooks that call them.

`spec_from_v1_class` reads a V1 class (`INPUT_TYPES`, `RETURN_TYPES`, `FUNCTION`, the flag
attributes and the optional `IS_CHANGED`, `VALIDATE_INPUTS` and `check_lazy_status`) into the
same `NodeSpec` Flowmill's own `@node` functions produce, so validation, the executor and
`/object_info` never look at the class again. `INPUT_TYPES()` is called once, at load time.
Finding, importing and registering packs is engine/comfy_packs.py's job, not this module's.

How the executor calls the hooks of a V1 spec (`keeps_instance=True`; `wants_context` is
False, V1 code reaches its context through `CURRENT_NODE_CONTEXT` and the shims):

- `make_hooks()` builds one class instance; keep the hooks per (node id, class type).
- `run(**inputs)`: every input present in the prompt, under its own name, with unconnected
  optional inputs left OUT (never passed as None: `**kwargs` nodes test `"x" in kwargs`).
  When FUNCTION takes `**kwargs` (`spec.takes_undeclared_inputs`), links into inputs the
  class does not declare are passed too, as ComfyUI does for variadic nodes. An input
  declared both required and optional is required (ComfyUI's lookup order).
  Hidden inputs go under their own names: PROMPT -> the prompt dict, DYNPROMPT -> the
  dynamic prompt (`get_node(id)`, `has_node(id)`, `get_original_prompt()`), EXTRA_PNGINFO ->
  extra_pnginfo or None, UNIQUE_ID -> the node id string. A hidden input of any other type is
  an ordinary input that only expansions set. `rawLink` inputs receive the link
  `[node_id, index]` itself. With `spec.input_is_list`, every value is a list. Set
  `CURRENT_NODE_CONTEXT` around the call and create the task of an awaitable result while
  it is set. The hook scopes `GraphBuilder()`'s default prefix to `<node id>.0.` itself; an
  executor that wants ComfyUI's per-index prefixes wraps the call in
  `engine.graph_builder.default_prefix(node_id, call_index)`, which the hook keeps. Returns
  a tuple or a `NodeOutput` (or an awaitable of one); a bare `ExecutionBlocker` return is
  already spread over every output.
- `check_lazy(**inputs)`: the same inputs as `run`, unevaluated lazy inputs as None; returns
  the list of input names still needed (or an awaitable of it).
- `fingerprint(**inputs)`: constant inputs as values, linked inputs as None, plus hidden
  inputs; returns IS_CHANGED's value (NaN: always re-run), or an awaitable of it.
- `validate(**inputs)`: like `fingerprint`, plus `input_types={input name: received wire type}`
  for linked inputs when `spec.validate_wants_types`. Returns True, or False / a message
  (custom_validation_failed), or an awaitable. `check_lazy`, `fingerprint` and `validate`
  drop keywords their method does not accept, so passing every input is always safe.

This module imports no server code, no registry and no pack: it compiles one class it is given.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.context import CURRENT_NODE_CONTEXT
from engine.graph_builder import node_call_prefix
from engine.spec import (
    HIDDEN_UNIQUE_ID,
    ExecutionBlocker,
    InputKind,
    InputSpec,
    NodeHooks,
    NodeOutput,
    NodeSpec,
    OutputSpec,
)

log = logging.getLogger(__name__)

DEFAULT_CATEGORY = "sd"
_INPUT_SECTIONS = ("required", "optional", "hidden")
# First-parameter names that mark a plain function in a class body as an instance method.
_SELF_NAMES = frozenset({"self", "s", "cls"})
_RESULT_KEYS = frozenset({"ui", "result", "expand"})


class V1ClassError(TypeError):
    """A V1 node class cannot be compiled; the message names the node and the attribute."""


# --- inputs -------------------------------------------------------------------------------


def _wire_type(where: str, value: Any) -> str:
    """A plain str for a type name; `IO.IMAGE` and other str subclasses lose their class."""
    if not isinstance(value, str):
        raise V1ClassError(f"{where}: expected a type name string, got {value!r}")
    return str.__str__(value)


def _split_entry(where: str, name: str, entry: Any) -> tuple[Any, dict[str, Any]]:
    """`(TYPE,)`, `(TYPE, options)` or a bare `TYPE` -> (TYPE, options)."""
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, (tuple, list)) and entry:
        options = entry[1] if len(entry) > 1 and entry[1] is not None else {}
        if not isinstance(options, Mapping):
            raise V1ClassError(f"{where}: input {name!r} options must be a dict, got {options!r}")
        return entry[0], dict(options)
    raise V1ClassError(f"{where}: input {name!r} must be (TYPE,) or (TYPE, options), got {entry!r}")


def _visible_input(where: str, name: str, kind: InputKind, entry: Any) -> InputSpec:
    declared, options = _split_entry(where, name, entry)
    lazy = bool(options.get("lazy", False))
    if isinstance(declared, (list, tuple)):
        return InputSpec(name, "COMBO", kind, options, choices=tuple(declared), lazy=lazy)
    wire = _wire_type(f"{where} input {name!r}", declared)
    if wire == "COMBO":
        # The newer combo form: ("COMBO", {"options": [...]}).
        listed = options.get("options")
        choices = tuple(listed) if isinstance(listed, (list, tuple)) else ()
        return InputSpec(name, "COMBO", kind, options, choices=choices, lazy=lazy)
    return InputSpec(name, wire, kind, options, lazy=lazy)


def _hidden_input(where: str, name: str, entry: Any) -> InputSpec:
    declared, _options = _split_entry(where, name, entry)
    return InputSpec(name, _wire_type(f"{where} hidden input {name!r}", declared), "hidden")


def _compile_inputs(where: str, cls: type) -> tuple[InputSpec, ...]:
    input_types = getattr(cls, "INPUT_TYPES", None)
    if input_types is None:
        raise V1ClassError(f"{where}: the class has no INPUT_TYPES classmethod")
    declared = input_types()
    if not isinstance(declared, Mapping):
        raise V1ClassError(f"{where}: INPUT_TYPES() returned {type(declared).__name__}, not a dict")
    specs: list[InputSpec] = []
    seen: set[str] = set()
    for kind in _INPUT_SECTIONS:
        section = declared.get(kind) or {}
        if not isinstance(section, Mapping):
            raise V1ClassError(f"{where}: INPUT_TYPES()[{kind!r}] must be a dict, got {section!r}")
        for name, entry in section.items():
            if str(name) in seen:
                # ComfyUI looks an input up in required, then optional, then hidden: the first wins.
                continue
            seen.add(str(name))
            if kind == "hidden":
                specs.append(_hidden_input(where, str(name), entry))
            else:
                specs.append(_visible_input(where, str(name), "required" if kind == "required" else "optional", entry))
    return tuple(specs)


# --- outputs ------------------------------------------------------------------------------


def _tuple_attribute(where: str, cls: type, attribute: str) -> tuple[Any, ...] | None:
    value = getattr(cls, attribute, None)
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise V1ClassError(f"{where}: {attribute} must be a tuple, got {value!r} (a missing trailing comma?)")
    return tuple(value)


def _output_wire(where: str, value: Any) -> str:
    # A list as a return type is ComfyUI's combo output (a choice list passed downstream).
    return "COMBO" if isinstance(value, (list, tuple)) else _wire_type(f"{where} RETURN_TYPES", value)


def _list_flags(where: str, cls: type, count: int) -> list[bool]:
    declared = getattr(cls, "OUTPUT_IS_LIST", None)
    if isinstance(declared, bool):
        return [declared] * count
    flags = [bool(flag) for flag in _tuple_attribute(where, cls, "OUTPUT_IS_LIST") or ()]
    return (flags + [False] * count)[:count]


def _compile_outputs(where: str, cls: type) -> tuple[OutputSpec, ...]:
    wires = [_output_wire(where, value) for value in _tuple_attribute(where, cls, "RETURN_TYPES") or ()]
    count = len(wires)
    names = [str(name) for name in _tuple_attribute(where, cls, "RETURN_NAMES") or ()]
    if names and len(names) != count:
        log.warning("%s: RETURN_NAMES has %d names for %d outputs", where, len(names), count)
    # ComfyUI names unnamed outputs after their type.
    names = [names[index] if index < len(names) else wires[index] for index in range(count)]
    tooltips = list(_tuple_attribute(where, cls, "OUTPUT_TOOLTIPS") or ())
    tooltips = (tooltips + [None] * count)[:count]
    flags = _list_flags(where, cls, count)
    return tuple(
        OutputSpec(wire, name, is_list, None if tooltip is None else str(tooltip))
        for wire, name, is_list, tooltip in zip(wires, names, flags, tooltips, strict=True)
    )


# --- methods ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _MethodRef:
    """Where one optional V1 method is fetched from, and which keywords it accepts.

    `parameters` is None when the method takes `**kwargs` (or cannot be inspected): it then
    receives every input passed.
    """

    name: str
    on_instance: bool
    parameters: frozenset[str] | None


def _keyword_names(function: Callable[..., Any], drop_first: bool) -> frozenset[str] | None:
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return None
    if drop_first and parameters:
        parameters = parameters[1:]
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
        return None
    keyword_kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(parameter.name for parameter in parameters if parameter.kind in keyword_kinds)


def _method_ref(where: str, cls: type, name: str, *, class_level: bool) -> _MethodRef | None:
    """Describe method `name`, or None when the class does not define it.

    ComfyUI calls IS_CHANGED and VALIDATE_INPUTS on the class (`class_level`) and
    check_lazy_status on the instance. Classmethods and staticmethods behave the same either
    way; a plain function binds to the instance when it is called on the instance, or when
    its first parameter is self/s/cls (a method missing its @classmethod). Otherwise it is a
    function stored on the class, such as the `validate_inputs(input_types)` that ComfyUI's
    testing pack assigns, and is called unbound.
    """
    try:
        raw = inspect.getattr_static(cls, name)
    except AttributeError:
        return None
    if raw is None:
        return None
    if isinstance(raw, (classmethod, staticmethod)):
        return _MethodRef(name, False, _keyword_names(raw.__func__, isinstance(raw, classmethod)))
    if inspect.isfunction(raw):
        first = next(iter(inspect.signature(raw).parameters), None)
        binds = not class_level or first in _SELF_NAMES
        return _MethodRef(name, binds, _keyword_names(raw, binds))
    if callable(raw):
        return _MethodRef(name, False, _keyword_names(raw, False))
    raise V1ClassError(f"{where}: {name} is {type(raw).__name__}, not a method")


def _takes_kwargs(cls: type, function: str) -> bool:
    """True when FUNCTION accepts `**kwargs`: ComfyUI then passes it links into undeclared inputs."""
    try:
        parameters = inspect.signature(getattr(cls, function)).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters)


def _function_name(where: str, cls: type) -> str:
    function = getattr(cls, "FUNCTION", None)
    if not isinstance(function, str) or not function:
        raise V1ClassError(f"{where}: FUNCTION must name the method to run, got {function!r}")
    if not callable(getattr(cls, function, None)):
        raise V1ClassError(f"{where}: FUNCTION is {function!r}, but the class has no such method")
    return function


# --- hooks --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _V1Methods:
    """Everything `make_hooks` needs, resolved once when the class is compiled."""

    class_type: str
    function: str
    output_count: int
    check_lazy: _MethodRef | None
    fingerprint: _MethodRef | None
    validate: _MethodRef | None


def _then(result: Any, finish: Callable[[Any], Any]) -> Any:
    """Apply `finish` now, or after awaiting when the V1 method was async (stays awaitable)."""
    if inspect.isawaitable(result):

        async def finish_later() -> Any:
            return finish(await result)

        return finish_later()
    return finish(result)


def _dict_result(where: str, result: Mapping[str, Any]) -> NodeOutput:
    values = result.get("result")
    if values is not None and not isinstance(values, (tuple, list)):
        raise TypeError(f"{where}: 'result' must be a tuple of outputs, got {type(values).__name__}")
    return NodeOutput(values=tuple(values or ()), ui=result.get("ui"), expand=result.get("expand"))


def _normalise_result(where: str, result: Any, output_count: int) -> tuple[Any, ...] | NodeOutput:
    """A V1 return value -> a tuple of outputs or a NodeOutput."""
    if isinstance(result, NodeOutput):
        return result
    if isinstance(result, dict) and (_RESULT_KEYS & result.keys() or not result):
        return _dict_result(where, result)
    if isinstance(result, ExecutionBlocker):
        # ComfyUI accepts a bare blocker and applies it to every output.
        return (result,) * output_count
    if isinstance(result, (tuple, list)):
        return tuple(result)
    if result is None and output_count == 0:
        return ()
    raise TypeError(
        f"{where} returned {type(result).__name__}; a V1 node returns a tuple of its "
        f"{output_count} outputs or a dict with 'result', 'ui' and/or 'expand'"
    )


def _needed_inputs(where: str, result: Any) -> list[str]:
    if result is None:
        return []
    if isinstance(result, (list, tuple, set, frozenset)):
        return [str(name) for name in result]
    raise TypeError(f"{where}: check_lazy_status returned {type(result).__name__}, not a list of input names")


def _optional_hook(
    cls: type, instance: object, ref: _MethodRef | None, finish: Callable[[Any], Any] | None
) -> Callable[..., Any] | None:
    if ref is None:
        return None
    method = getattr(instance if ref.on_instance else cls, ref.name)
    accepted = ref.parameters

    def hook(**inputs: Any) -> Any:
        if accepted is not None:
            inputs = {key: value for key, value in inputs.items() if key in accepted}
        result = method(**inputs)
        return result if finish is None else _then(result, finish)

    return hook


def _run_hook(where: str, function: Callable[..., Any], output_count: int) -> Callable[..., Any]:
    """Call FUNCTION with the inputs and normalise what it returns (awaitable if it is async).

    `GraphBuilder()` without a prefix takes the running node's id as its prefix root. An async
    function's body runs later, in the task that awaits it, so the scope is entered again there.
    """

    def finish(result: Any) -> Any:
        return _normalise_result(where, result, output_count)

    def run(**inputs: Any) -> Any:
        context = CURRENT_NODE_CONTEXT.get()
        root = context.node_id if context is not None else ""
        with node_call_prefix(root):
            result = function(**inputs)
        if not inspect.isawaitable(result):
            return finish(result)

        async def finish_later() -> Any:
            with node_call_prefix(root):
                return finish(await result)

        return finish_later()

    return run


def _make_hooks(cls: type, methods: _V1Methods) -> NodeHooks:
    """One node instance: `cls()` plus hooks bound to it (ComfyUI keeps one per node id)."""
    instance = cls()
    where = f"node {methods.class_type!r}"
    return NodeHooks(
        run=_run_hook(where, getattr(instance, methods.function), methods.output_count),
        check_lazy=_optional_hook(cls, instance, methods.check_lazy, lambda result: _needed_inputs(where, result)),
        fingerprint=_optional_hook(cls, instance, methods.fingerprint, None),
        validate=_optional_hook(cls, instance, methods.validate, None),
    )


# --- the spec -----------------------------------------------------------------------------


def _validated_inputs(validate: _MethodRef | None, inputs: tuple[InputSpec, ...]) -> frozenset[str]:
    if validate is None:
        return frozenset()
    if validate.parameters is None:
        # VALIDATE_INPUTS(**kwargs) receives every input, so ComfyUI skips all built-in checks.
        return frozenset(item.name for item in inputs)
    return validate.parameters - {"input_types"}


def _keyed_by_node_id(cls: type, inputs: tuple[InputSpec, ...]) -> bool:
    """ComfyUI puts the node id into the cache key for NOT_IDEMPOTENT classes and for classes
    with a hidden UNIQUE_ID input: such a node may act on its own id (e.g. echo it in its `ui`),
    so two otherwise identical nodes must not share one cached result (comfyui-compat.md §4.2)."""
    declares_unique_id = any(item.kind == "hidden" and item.type == HIDDEN_UNIQUE_ID for item in inputs)
    return bool(getattr(cls, "NOT_IDEMPOTENT", False)) or declares_unique_id


def spec_from_v1_class(class_type: str, cls: type, display_name: str | None, module_name: str) -> NodeSpec:
    """Compile ComfyUI V1 class `cls`, registered as `class_type` by pack module `module_name`.

    Raises V1ClassError (or whatever the pack's INPUT_TYPES raises) when the class is malformed.
    """
    where = f"node {class_type!r} ({module_name})"
    inputs = _compile_inputs(where, cls)
    outputs = _compile_outputs(where, cls)
    validate = _method_ref(where, cls, "VALIDATE_INPUTS", class_level=True)
    fingerprint = _method_ref(where, cls, "IS_CHANGED", class_level=True)
    function = _function_name(where, cls)
    methods = _V1Methods(
        class_type=class_type,
        function=function,
        output_count=len(outputs),
        check_lazy=_method_ref(where, cls, "check_lazy_status", class_level=False),
        fingerprint=fingerprint,
        validate=validate,
    )
    return NodeSpec(
        id=class_type,
        display_name=display_name or class_type,
        category=str(getattr(cls, "CATEGORY", DEFAULT_CATEGORY)),
        description=str(getattr(cls, "DESCRIPTION", "") or ""),
        python_module=module_name,
        inputs=inputs,
        outputs=outputs,
        make_hooks=functools.partial(_make_hooks, cls, methods),
        output_node=bool(getattr(cls, "OUTPUT_NODE", False)),
        # ComfyUI tests truthiness, so INPUT_IS_LIST = (True,) counts as True.
        input_is_list=bool(getattr(cls, "INPUT_IS_LIST", False)),
        not_idempotent=_keyed_by_node_id(cls, inputs),
        keeps_instance=True,
        has_fingerprint=fingerprint is not None,
        has_validate=validate is not None,
        validated_inputs=_validated_inputs(validate, inputs),
        validate_wants_types=validate is not None
        and validate.parameters is not None
        and "input_types" in validate.parameters,
        takes_undeclared_inputs=_takes_kwargs(cls, function),
        deprecated=bool(getattr(cls, "DEPRECATED", False)),
        experimental=bool(getattr(cls, "EXPERIMENTAL", False)),
    )
