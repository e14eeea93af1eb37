"""ComfyUI V1 custom-node classes compiled to `NodeSpec`s, and the custom-node pack loader.

`spec_from_v1_class` reads a V1 class (`INPUT_TYPES`, `RETURN_TYPES`, `FUNCTION`, the flag
attributes and the optional `IS_CHANGED`, `VALIDATE_INPUTS` and `check_lazy_status`) into the
same `NodeSpec` Flowmill's own `@node` functions produce, so validation, the executor and
`/object_info` never look at the class again. `INPUT_TYPES()` is called once, at load time.

`load_custom_nodes` imports each pack of a custom-node directory as `custom_nodes.<name>`,
with engine/comfy_shims/ (stand-ins for `comfy.utils`, `comfy_execution.graph_utils`, ...)
importable, and registers its `NODE_CLASS_MAPPINGS`. A pack or class that fails is recorded
in `registry.load_failures` and skipped; loading never raises. Safe mode imports nothing.

How the executor calls the hooks of a V1 spec (`keeps_instance=True`; `wants_context` is
False, V1 code reaches its context through `CURRENT_NODE_CONTEXT` and the shims):

- `make_hooks()` builds one class instance; keep the hooks per (node id, class type).
- `run(**inputs)`: every input present in the prompt, under its own name, with unconnected
  optional inputs left OUT (never passed as None: `**kwargs` nodes test `"x" in kwargs`).
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

This module imports no server code; the registry instance is passed in.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import inspect
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from engine.context import CURRENT_NODE_CONTEXT
from engine.graph_builder import node_call_prefix
from engine.registry import NodeRegistry, PackLoadFailure
from engine.spec import ExecutionBlocker, InputKind, InputSpec, NodeHooks, NodeOutput, NodeSpec, OutputSpec

log = logging.getLogger(__name__)

SHIMS_DIR = Path(__file__).resolve().parent / "comfy_shims"
FLOWMILL_ROOT = Path(__file__).resolve().parent.parent
PACK_MODULE_PARENT = "custom_nodes"
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
    for kind in _INPUT_SECTIONS:
        section = declared.get(kind) or {}
        if not isinstance(section, Mapping):
            raise V1ClassError(f"{where}: INPUT_TYPES()[{kind!r}] must be a dict, got {section!r}")
        for name, entry in section.items():
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


def spec_from_v1_class(class_type: str, cls: type, display_name: str | None, module_name: str) -> NodeSpec:
    """Compile ComfyUI V1 class `cls`, registered as `class_type` by pack module `module_name`.

    Raises V1ClassError (or whatever the pack's INPUT_TYPES raises) when the class is malformed.
    """
    where = f"node {class_type!r} ({module_name})"
    inputs = _compile_inputs(where, cls)
    outputs = _compile_outputs(where, cls)
    validate = _method_ref(where, cls, "VALIDATE_INPUTS", class_level=True)
    fingerprint = _method_ref(where, cls, "IS_CHANGED", class_level=True)
    methods = _V1Methods(
        class_type=class_type,
        function=_function_name(where, cls),
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
        not_idempotent=bool(getattr(cls, "NOT_IDEMPOTENT", False)),
        keeps_instance=True,
        has_fingerprint=fingerprint is not None,
        has_validate=validate is not None,
        validated_inputs=_validated_inputs(validate, inputs),
        validate_wants_types=validate is not None
        and validate.parameters is not None
        and "input_types" in validate.parameters,
        deprecated=bool(getattr(cls, "DEPRECATED", False)),
        experimental=bool(getattr(cls, "EXPERIMENTAL", False)),
    )


# --- shims and sys.path -------------------------------------------------------------------


def _top_level_names(directory: Path) -> frozenset[str]:
    """Names importable from `directory` as top-level modules or packages."""
    names = set()
    for entry in directory.iterdir():
        if entry.name.startswith((".", "__")):
            continue
        if entry.is_dir():
            names.add(entry.name)
        elif entry.suffix == ".py":
            names.add(entry.stem)
    return frozenset(names)


def shadowed_flowmill_names() -> frozenset[str]:
    """Shim module names that are also Flowmill top-level packages (must be empty)."""
    return _top_level_names(SHIMS_DIR) & _top_level_names(FLOWMILL_ROOT)


@contextlib.contextmanager
def _shims_first_on_path() -> Iterator[None]:
    """Make the shims win for the duration of one pack import.

    Only our own entry is removed afterwards: packs often append their own directories to
    sys.path at import time and rely on them when their nodes run.
    """
    entry = str(SHIMS_DIR)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def _keep_shims_importable() -> None:
    """Leave the shims at the END of sys.path once a pack has loaded.

    Nodes import shim modules lazily inside their functions (`from comfy.utils import
    ProgressBar` in `run`), so the shims must stay importable while nodes run. At the end of
    sys.path they can never shadow an installed package or Flowmill's own modules; shim
    modules already imported during loading stay in sys.modules either way.
    """
    entry = str(SHIMS_DIR)
    if entry not in sys.path:
        sys.path.append(entry)


# --- importing one pack -------------------------------------------------------------------


def _pack_entries(directory: Path) -> list[Path]:
    """Packs in `directory`: packages with __init__.py and single .py files, sorted by name."""
    entries = []
    for entry in sorted(directory.iterdir(), key=lambda path: path.name):
        if entry.name.startswith((".", "__")) or entry.name.endswith(".disabled"):
            continue
        if entry.is_dir() and (entry / "__init__.py").is_file():
            entries.append(entry)
        elif entry.is_file() and entry.suffix == ".py":
            entries.append(entry)
    return entries


def _pack_name(entry: Path) -> str:
    return entry.stem if entry.is_file() else entry.name


def _module_key(pack_name: str) -> str:
    # A dot inside the key would make Python look for a parent package that does not exist.
    return f"{PACK_MODULE_PARENT}.{pack_name.replace('.', '_')}"


def _forget_modules(key: str) -> None:
    """Drop a failed pack and any of its submodules from sys.modules."""
    for name in [name for name in sys.modules if name == key or name.startswith(f"{key}.")]:
        del sys.modules[name]


def _same_source(module: ModuleType, entry: Path) -> bool:
    origin = getattr(module, "__file__", None)
    expected = entry / "__init__.py" if entry.is_dir() else entry
    return origin is not None and os.path.realpath(origin) == os.path.realpath(expected)


def _import_pack(pack_name: str, entry: Path) -> ModuleType:
    """Import one pack under `custom_nodes.<name>`; raise whatever its import raises."""
    key = _module_key(pack_name)
    existing = sys.modules.get(key)
    if existing is not None:
        if _same_source(existing, entry):
            return existing  # already imported (another registry, or a reload): reuse it
        raise ImportError(f"a pack named {pack_name!r} is already loaded from {existing.__file__}")
    location = entry / "__init__.py" if entry.is_dir() else entry
    search = [str(entry)] if entry.is_dir() else None
    spec = importlib.util.spec_from_file_location(key, location, submodule_search_locations=search)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot build an import spec for {location}")
    module = importlib.util.module_from_spec(spec)
    # Registered before running it: the pack's relative imports look their parent up here.
    sys.modules[key] = module
    try:
        with _shims_first_on_path():
            spec.loader.exec_module(module)
    except BaseException:
        _forget_modules(key)
        raise
    return module


# --- registering one pack -----------------------------------------------------------------


def _web_directory(entry: Path, module: ModuleType) -> tuple[str | None, str | None]:
    """(resolved WEB_DIRECTORY, None) or (None, why it was refused); (None, None) if undeclared."""
    declared = getattr(module, "WEB_DIRECTORY", None)
    if declared is None:
        return None, None
    if not entry.is_dir():
        return None, f"WEB_DIRECTORY {declared!r} ignored: a single-file pack has no folder of its own to serve"
    root = os.path.realpath(entry)
    candidate = os.path.realpath(os.path.join(root, os.fspath(declared)))
    # Strictly inside: serving the pack root itself would expose its Python source.
    if candidate == root or os.path.commonpath([root, candidate]) != root:
        return None, f"WEB_DIRECTORY {declared!r} ignored: it resolves outside the pack folder {root}"
    if not os.path.isdir(candidate):
        return None, f"WEB_DIRECTORY {declared!r} ignored: {candidate} is not a directory"
    return candidate, None


@dataclass(frozen=True)
class _PackContext:
    python_module: str
    display_names: Mapping[Any, Any]
    web_directory: str | None

    def display_name(self, class_type: Any) -> str | None:
        name = self.display_names.get(class_type)
        return None if name is None else str(name)


def _register_class(
    registry: NodeRegistry, failure: Callable[[str], None], class_type: Any, cls: Any, context: _PackContext
) -> None:
    try:
        spec = spec_from_v1_class(str(class_type), cls, context.display_name(class_type), context.python_module)
        if context.web_directory is not None:
            spec = replace(spec, web_directory=context.web_directory)
        registry.register(spec, strict=False)
    except Exception:
        failure(f"node {class_type!r} skipped:\n{traceback.format_exc()}")


def _register_pack(registry: NodeRegistry, pack_name: str, entry: Path, module: ModuleType) -> None:
    def failure(message: str) -> None:
        log.error("custom node pack %s: %s", pack_name, message)
        registry.load_failures.append(PackLoadFailure(pack_name, str(entry), message))

    web_directory, refusal = _web_directory(entry, module)
    if refusal is not None:
        failure(refusal)
    if web_directory is not None:
        registry.web_directories[pack_name] = web_directory
    mappings = getattr(module, "NODE_CLASS_MAPPINGS", None)
    if mappings is None:
        if hasattr(module, "comfy_entrypoint"):
            failure("V3 packs (comfy_entrypoint) are not supported; no nodes registered")
        elif web_directory is None:
            failure("the pack defines no NODE_CLASS_MAPPINGS")
        return
    if not isinstance(mappings, Mapping):
        failure(f"NODE_CLASS_MAPPINGS is {type(mappings).__name__}, not a dict")
        return
    display_names = getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", None)
    context = _PackContext(
        python_module=f"{PACK_MODULE_PARENT}.{pack_name}",
        display_names=display_names if isinstance(display_names, Mapping) else {},
        web_directory=web_directory,
    )
    for class_type, cls in mappings.items():
        _register_class(registry, failure, class_type, cls, context)


def _load_pack(registry: NodeRegistry, pack_name: str, entry: Path) -> bool:
    """Import and register one pack; False (with a recorded failure) when its import fails."""
    started = time.perf_counter()
    try:
        module = _import_pack(pack_name, entry)
    except (Exception, SystemExit):  # a pack calling sys.exit() must not stop the server
        log.error("custom node pack %s (IMPORT FAILED)", pack_name)
        registry.load_failures.append(PackLoadFailure(pack_name, str(entry), traceback.format_exc()))
        return False
    try:
        _register_pack(registry, pack_name, entry, module)
    except Exception:  # a pack's odd module attributes must not stop the server either
        registry.load_failures.append(PackLoadFailure(pack_name, str(entry), traceback.format_exc()))
    log.info("custom node pack %s loaded in %.1f ms", pack_name, (time.perf_counter() - started) * 1000)
    return True


def load_custom_nodes(
    registry: NodeRegistry, directory: Path, *, enabled: bool = True, allow: Collection[str] | None = None
) -> list[str]:
    """Load every pack in `directory` into `registry`; return the names of the packs imported.

    - `enabled=False` is safe mode: nothing is imported.
    - `allow`, when given, names the only packs that may load (others are skipped unimported).
    - Packs are entries with an `__init__.py` or single `.py` files; hidden names,
      `__pycache__` and names ending `.disabled` are skipped.
    - Import failures, classes that fail to compile or collide with a registered id, and
      refused WEB_DIRECTORY values go to `registry.load_failures`; this never raises.
    """
    if not enabled:
        log.info("safe mode: custom node packs in %s are not loaded", directory)
        return []
    if not directory.is_dir():
        return []
    shadowed = shadowed_flowmill_names()
    if shadowed:
        message = f"compatibility shims would shadow Flowmill modules {sorted(shadowed)}; no packs loaded"
        registry.load_failures.append(PackLoadFailure("<comfy_shims>", str(SHIMS_DIR), message))
        return []
    try:
        entries = _pack_entries(directory)
    except OSError:
        registry.load_failures.append(PackLoadFailure(directory.name, str(directory), traceback.format_exc()))
        return []
    loaded = []
    for entry in entries:
        pack_name = _pack_name(entry)
        if allow is not None and pack_name not in allow:
            log.info("custom node pack %s is not in the allow list; skipped", pack_name)
            continue
        if _load_pack(registry, pack_name, entry):
            loaded.append(pack_name)
    if loaded:
        _keep_shims_importable()
    return loaded
