"""The node registry: one instance, built in main.py, holding every node type by id.

`discover("nodes")` imports every module of Flowmill's own node package in sorted order;
registration order never matters. Each registration is checked against the conventions
(docstring, defaults within bounds, unique ids, function named after its file) and fails
with a message that names the node. `object_info()` exports ComfyUI's `/object_info` shape.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from engine.spec import InputSpec, NodeSpec

ChoiceLister = Callable[[str], list[str]]
_FLOWMILL_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class RegistrationError(ValueError):
    """A node breaks a registration convention."""


@dataclass(frozen=True)
class PackLoadFailure:
    """A custom-node pack that could not be imported; the server starts without it."""

    name: str
    path: str
    error: str


def no_choices(source: str) -> list[str]:
    """A ChoiceLister for callers without folders (tests, schema checks)."""
    return []


def _check_default_in_bounds(spec: NodeSpec, item: InputSpec) -> None:
    default = item.options.get("default")
    if default is None:
        return
    where = f"node {spec.id!r} input {item.name!r}"
    if item.type in ("INT", "FLOAT"):
        if isinstance(default, bool) or not isinstance(default, (int, float)) or math.isnan(default):
            raise RegistrationError(f"{where}: default {default!r} is not a number")
        low, high = item.options.get("min"), item.options.get("max")
        if (low is not None and default < low) or (high is not None and default > high):
            raise RegistrationError(f"{where}: default {default!r} lies outside [{low}, {high}]")
    if item.choices is not None and default not in item.choices:
        raise RegistrationError(f"{where}: default {default!r} is not one of {list(item.choices)}")


def check_conventions(spec: NodeSpec, *, strict: bool) -> None:
    """Raise RegistrationError if `spec` breaks a convention.

    `strict` adds Flowmill's own rules (id spelling, docstring) that third-party ComfyUI
    packs are not held to.
    """
    if not spec.id or not spec.id.strip():
        raise RegistrationError(f"a node from {spec.python_module} has an empty id")
    if strict and not _FLOWMILL_ID.match(spec.id):
        raise RegistrationError(f"node id {spec.id!r} must be PascalCase letters, digits and underscores")
    if strict and not spec.description:
        raise RegistrationError(f"node {spec.id!r} ({spec.python_module}) has no docstring")
    names = [item.name for item in spec.inputs]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise RegistrationError(f"node {spec.id!r} declares inputs {sorted(duplicates)} more than once")
    for item in spec.inputs:
        _check_default_in_bounds(spec, item)


class NodeRegistry:
    def __init__(self) -> None:
        self._specs: dict[str, NodeSpec] = {}
        self.load_failures: list[PackLoadFailure] = []
        self.web_directories: dict[str, str] = {}

    def register(self, spec: NodeSpec, *, strict: bool = True) -> None:
        check_conventions(spec, strict=strict)
        existing = self._specs.get(spec.id)
        if existing is not None:
            raise RegistrationError(
                f"node id {spec.id!r} is registered twice: by {existing.python_module} and {spec.python_module}"
            )
        self._specs[spec.id] = spec

    def get(self, node_id: str) -> NodeSpec | None:
        return self._specs.get(node_id)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._specs

    def __iter__(self) -> Iterator[NodeSpec]:
        return iter(self._specs[key] for key in sorted(self._specs))

    def __len__(self) -> int:
        return len(self._specs)

    def discover(self, package_name: str = "nodes") -> None:
        """Import every module under `package_name` and register the `@node` functions it defines."""
        package = importlib.import_module(package_name)
        module_names = sorted(
            info.name for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}.")
        )
        for module_name in module_names:
            module = importlib.import_module(module_name)
            stem = module_name.rsplit(".", 1)[-1]
            for value in vars(module).values():
                spec = getattr(value, "node_spec", None)
                if not isinstance(spec, NodeSpec) or value.__module__ != module_name:
                    continue
                name = value.__name__
                if name != stem and not name.startswith(f"{stem}_"):
                    raise RegistrationError(
                        f"node {spec.id!r}: function {name!r} must be named after its file "
                        f"{stem!r} (or {stem}_<variant>)"
                    )
                self.register(spec)

    def object_info(self, choices: ChoiceLister = no_choices) -> dict[str, Any]:
        return {spec.id: node_info(spec, choices) for spec in self}


def _input_info(item: InputSpec, choices: ChoiceLister) -> list[Any]:
    options = dict(item.options)
    if item.is_combo:
        listing = list(item.choices) if item.choices is not None else choices(item.choice_source or "")
        return [listing, options] if options else [listing]
    return [item.type, options] if options else [item.type]


def node_info(spec: NodeSpec, choices: ChoiceLister = no_choices) -> dict[str, Any]:
    """One node's `/object_info` entry in ComfyUI's V1 shape."""
    sections: dict[str, dict[str, Any]] = {"required": {}, "optional": {}, "hidden": {}}
    for item in spec.inputs:
        if item.kind == "hidden":
            sections["hidden"][item.name] = item.type
        else:
            sections[item.kind][item.name] = _input_info(item, choices)
    info_inputs = {kind: entries for kind, entries in sections.items() if entries or kind == "required"}
    return {
        "input": info_inputs,
        "input_order": {kind: list(entries) for kind, entries in sections.items() if entries and kind != "hidden"},
        "output": [output.type for output in spec.outputs],
        "output_is_list": [output.is_list for output in spec.outputs],
        "output_name": [output.name for output in spec.outputs],
        "output_tooltips": [output.tooltip for output in spec.outputs],
        "name": spec.id,
        "display_name": spec.display_name,
        "description": spec.description,
        "python_module": spec.python_module,
        "category": spec.category,
        "output_node": spec.output_node,
        "deprecated": spec.deprecated,
        "experimental": spec.experimental,
    }
