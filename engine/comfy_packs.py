"""The custom-node pack loader: finds, imports and registers ComfyUI V1 packs from a directory.

`load_custom_nodes` imports each pack of a custom-node directory as `custom_nodes.<name>`,
with engine/comfy_shims/ (stand-ins for `comfy.utils`, `comfy_execution.graph_utils`, ...)
importable, and registers its `NODE_CLASS_MAPPINGS`. A pack or class that fails is recorded
in `registry.load_failures` and skipped; loading never raises. Safe mode imports nothing.
This module owns sys.path handling for the shims (`SHIMS_DIR`, `shadowed_flowmill_names`),
pack discovery and import, and the WEB_DIRECTORY checks; each class is compiled by
`engine.comfy_v1.spec_from_v1_class`.

This module imports no server code; the registry instance is passed in.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from engine.comfy_v1 import spec_from_v1_class
from engine.registry import NodeRegistry, PackLoadFailure

log = logging.getLogger(__name__)

SHIMS_DIR = Path(__file__).resolve().parent / "comfy_shims"
FLOWMILL_ROOT = Path(__file__).resolve().parent.parent
PACK_MODULE_PARENT = "custom_nodes"


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

    def display_name(self, class_type: Any) -> str | None:
        name = self.display_names.get(class_type)
        return None if name is None else str(name)


def _register_class(
    registry: NodeRegistry, failure: Callable[[str], None], class_type: Any, cls: Any, context: _PackContext
) -> None:
    try:
        spec = spec_from_v1_class(str(class_type), cls, context.display_name(class_type), context.python_module)
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
