"""Prompt validation with ComfyUI's error types and JSON shapes.

Every problem is reported at once, per node, naming the input, what was expected and what
came. Walks are iterative, so a 10,000-node chain validates without recursion. An output
whose upstream is invalid is dropped while valid outputs still run, as ComfyUI does; only
when no output survives is the prompt rejected.

Validation also normalises the prompt: constants are coerced to their widget type and
`{"__value__": [...]}` literal lists are unwrapped, so the executor sees clean values.
Links into inputs a node does not declare are kept (and their sources validated and run)
when the node takes `**kwargs`, as ComfyUI passes them to variadic V1 nodes; undeclared
constants are dropped, as in ComfyUI.

Last, the size of every node's outputs is estimated sources first (engine/budget.py), and
a node whose tensors would exceed `max_tensor_bytes` fails with `tensor_budget_exceeded`.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.budget import check_budget, default_max_tensor_bytes
from engine.comfy_core_nodes import describe_missing_type
from engine.context import NodeContext
from engine.graph_walk import post_order
from engine.node_call import accepted_arguments
from engine.paths import Folders
from engine.registry import ChoiceLister, NodeRegistry, no_choices
from engine.spec import InputSpec, NodeSpec
from engine.wire import is_link, normalise_link, types_compatible

ContextFactory = Callable[[str], NodeContext]
_MAX_LISTED_CHOICES = 20


@dataclass
class ValidationResult:
    ok: bool
    error: dict[str, Any] | None
    outputs: list[str]
    node_errors: dict[str, dict[str, Any]]
    prompt: dict[str, dict[str, Any]] = field(default_factory=dict)


def request_error(kind: str, message: str, details: str = "", extra_info: dict | None = None) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra_info or {}}


def _input_error(kind: str, message: str, item: InputSpec, value: Any = None, **extra: Any) -> dict[str, Any]:
    info = {"input_name": item.name, "input_config": [item.type, dict(item.options)], "received_value": value}
    info.update(extra)
    return request_error(kind, message, item.name, info)


def _coerce(item: InputSpec, value: Any) -> Any:
    """Convert a literal to the widget type, as ComfyUI does; raises on impossible values."""
    if item.type == "INT":
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{value} is not a whole number")
        return int(value)
    if item.type == "FLOAT":
        number = float(value)
        if math.isnan(number):
            raise ValueError("NaN is not a valid value")
        return number
    if item.type == "STRING":
        return str(value)
    if item.type == "BOOLEAN":
        if isinstance(value, str):
            if value.lower() not in ("true", "false"):
                raise ValueError(f"{value!r} is not true or false")
            return value.lower() == "true"
        return bool(value)
    return value


def _elided(options: list[str]) -> str:
    if len(options) <= _MAX_LISTED_CHOICES:
        return str(options)
    return f"{options[:_MAX_LISTED_CHOICES]} ... ({len(options)} options)"


class _PromptValidator:
    """Holds the per-call state of one `validate_prompt` call."""

    def __init__(self, prompt: Mapping[str, Any], registry: NodeRegistry, choices: ChoiceLister,
                 contexts: ContextFactory | None) -> None:
        self.prompt = prompt
        self.registry = registry
        self.choices = choices
        self.contexts = contexts
        self.listings: dict[str, set[str]] = {}
        self.errors: dict[str, list[dict[str, Any]]] = {}
        self.normalised: dict[str, dict[str, Any]] = {}

    def spec(self, node_id: str) -> NodeSpec:
        spec = self.registry.get(self.prompt[node_id]["class_type"])
        assert spec is not None  # unknown types are rejected before the walk
        return spec

    def upstream(self, node_id: str) -> list[str]:
        """Ids of nodes linked into `node_id` that exist (missing ones are reported as errors).

        Read from the checked inputs, so an undeclared link that the node cannot take is
        neither validated nor run."""
        checked = self.normalised.get(node_id)
        inputs = checked["inputs"] if checked is not None else self.prompt[node_id].get("inputs")
        if not isinstance(inputs, Mapping):
            return []  # reported by check_node
        return [str(value[0]) for value in inputs.values() if is_link(value) and str(value[0]) in self.prompt]

    def listing(self, source: str) -> set[str]:
        if source not in self.listings:
            self.listings[source] = set(self.choices(source))
        return self.listings[source]

    def check_node(self, node_id: str) -> None:
        """Check one node's own inputs; record errors and its normalised inputs."""
        node = self.prompt[node_id]
        spec = self.spec(node_id)
        raw_inputs = node.get("inputs") or {}
        if not isinstance(raw_inputs, Mapping):
            self.errors.setdefault(node_id, []).append(
                request_error("invalid_prompt", "Node inputs must be an object", f"got {type(raw_inputs).__name__}")
            )
            return
        errors: list[dict[str, Any]] = []
        clean: dict[str, Any] = {}
        received_types: dict[str, str] = {}
        for item in spec.inputs:
            if item.kind == "hidden":
                if item.name in raw_inputs:  # e.g. loop state that expansions pass along
                    value = raw_inputs[item.name]
                    clean[item.name] = normalise_link(value) if is_link(value) else value
                continue
            if item.name not in raw_inputs or raw_inputs[item.name] is None:
                if item.kind == "required":
                    errors.append(_input_error(
                        "required_input_missing", f"Required input is missing: {item.name} (expected {item.type})",
                        item))
                continue
            value = raw_inputs[item.name]
            if isinstance(value, list):
                link_error = self.check_link(spec, item, value, received_types)
                if link_error:
                    errors.append(link_error)
                clean[item.name] = normalise_link(value) if is_link(value) else value
                continue
            if isinstance(value, dict) and "__value__" in value:
                value = value["__value__"]
            checked, error = self.check_constant(spec, item, value)
            if error:
                errors.append(error)
            clean[item.name] = checked
        if spec.takes_undeclared_inputs:
            errors.extend(self.check_undeclared_links(spec, raw_inputs, clean))
        errors.extend(self.run_custom_validation(node_id, spec, clean, received_types))
        self.normalised[node_id] = {**node, "inputs": clean}
        if errors:
            self.errors.setdefault(node_id, []).extend(errors)

    def check_undeclared_links(self, spec: NodeSpec, raw_inputs: Mapping[str, Any],
                               clean: dict[str, Any]) -> list[dict[str, Any]]:
        """Keep links into undeclared inputs (a `**kwargs` node takes them), checking each points
        at a real output; their type is unknown, so any type is accepted."""
        errors: list[dict[str, Any]] = []
        for name, value in raw_inputs.items():
            if spec.input(name) is not None or not is_link(value):
                continue
            error = self.check_link(spec, InputSpec(name, "*", "optional"), value, {})
            if error:
                errors.append(error)
            clean[name] = normalise_link(value)
        return errors

    def check_link(self, spec: NodeSpec, item: InputSpec, value: list, received_types: dict[str, str]) -> dict | None:
        if not is_link(value):
            return _input_error("bad_linked_input",
                                "Bad linked input, must be a length-2 list of [node_id, slot_index]", item, value)
        source_id, slot = normalise_link(value)  # a slot saved as 0.0 indexes like 0
        if source_id not in self.prompt:
            return _input_error("bad_linked_input", f"Input {item.name} links to node {source_id}, which is not in "
                                "the prompt", item, value, linked_node=value)
        source = self.registry.get(self.prompt[source_id].get("class_type", ""))
        if source is None:
            return None  # reported as missing_node_type on the source itself
        if not 0 <= slot < len(source.outputs):
            return _input_error("bad_linked_input", f"Input {item.name} links to output slot {slot} of node "
                                f"{source_id} ({source.id}), which has {len(source.outputs)} outputs",
                                item, value, linked_node=value)
        received = source.outputs[slot].type
        received_types[item.name] = received
        if spec.validate_wants_types or types_compatible(received, item.type):
            return None
        return _input_error("return_type_mismatch", "Return type mismatch between linked nodes",
                            item, value, received_type=received, linked_node=value,
                            expected_type=item.type) | {
            "details": f"{item.name}, received_type({received}) mismatch input_type({item.type})"}

    def check_constant(self, spec: NodeSpec, item: InputSpec, value: Any) -> tuple[Any, dict | None]:
        if item.type in ("INT", "FLOAT", "STRING", "BOOLEAN"):
            try:
                value = _coerce(item, value)
            except (TypeError, ValueError, OverflowError) as error:
                return value, _input_error("invalid_input_type", f"Failed to convert an input value to a "
                                           f"{item.type} value", item, value, exception_message=str(error))
        if item.name in spec.validated_inputs:
            return value, None
        if item.type in ("INT", "FLOAT"):
            low, high = item.options.get("min"), item.options.get("max")
            if low is not None and value < low:
                return value, _input_error("value_smaller_than_min", f"Value {value} smaller than min of {low}",
                                           item, value)
            if high is not None and value > high:
                return value, _input_error("value_bigger_than_max", f"Value {value} bigger than max of {high}",
                                           item, value)
        if item.is_combo:
            allowed = set(item.choices) if item.choices is not None else self.listing(item.choice_source or "")
            if isinstance(value, (dict, list)) or value not in allowed:  # unhashable: never a choice
                options = list(item.choices) if item.choices is not None else sorted(allowed)
                error = _input_error("value_not_in_list", "Value not in list", item, value)
                error["details"] = f"{item.name}: '{value}' not in {_elided(options)}"
                return value, error
        return value, None

    def run_custom_validation(self, node_id: str, spec: NodeSpec, clean: dict[str, Any],
                              received_types: dict[str, str]) -> list[dict[str, Any]]:
        if not spec.has_validate:
            return []
        hooks = spec.make_hooks()
        if hooks.validate is None:
            return []
        # As in ComfyUI, linked inputs have no value yet and arrive as None.
        constants = {name: (None if is_link(value) else value) for name, value in clean.items()}
        arguments = accepted_arguments(hooks.validate, constants)
        if spec.validate_wants_types:
            arguments["input_types"] = received_types
        if hooks.wants_context and self.contexts is None:
            return [request_error("exception_during_validation", "Exception when validating node",
                                  f"{spec.id} validates with a context, but no folders were given")]
        args = [self.contexts(node_id)] if hooks.wants_context and self.contexts else []
        try:
            verdict = hooks.validate(*args, **arguments)
            if inspect.isawaitable(verdict):
                # Validation runs off the event loop (a worker thread or the CLI), so it may
                # drive an async hook to completion on a private loop.
                verdict = asyncio.run(_awaited(verdict))
        except Exception as error:  # a broken hook is a validation error for this node, not a crash
            return [request_error("exception_during_validation", "Exception when validating node", str(error),
                                  {"exception_type": type(error).__name__})]
        if verdict is True:
            return []
        return [request_error("custom_validation_failed", "Custom validation failed for node",
                              f"{spec.id} - {verdict}", {"input_name": next(iter(arguments), None)})]


async def _awaited(value: Any) -> Any:
    return await value


def _unknown_types(prompt: Mapping[str, Any], registry: NodeRegistry) -> tuple[dict | None, dict]:
    """Reject nodes without a known class_type, all at once (request level, as ComfyUI)."""
    node_errors: dict[str, dict[str, Any]] = {}
    first: dict | None = None
    for node_id, node in prompt.items():
        if not isinstance(node, Mapping) or "class_type" not in node:
            error = request_error("invalid_prompt", "Cannot execute because a node is missing the class_type "
                                  "property.", f"Node ID '#{node_id}'")
        elif not isinstance(node["class_type"], str):
            error = request_error("invalid_prompt", "class_type must be a string", f"Node ID '#{node_id}': got "
                                  f"{type(node['class_type']).__name__}")
        elif node["class_type"] not in registry:
            meta = node.get("_meta")
            title = meta.get("title", node["class_type"]) if isinstance(meta, Mapping) else node["class_type"]
            error = request_error("missing_node_type", f"Node '{title}' not found: "
                                  f"{describe_missing_type(node['class_type'])}.", f"Node ID '#{node_id}'",
                                  {"node_id": node_id, "class_type": node["class_type"], "node_title": title})
        else:
            continue
        first = first or error
        node_errors[str(node_id)] = {"errors": [error], "dependent_outputs": [],
                                     "class_type": node.get("class_type") if isinstance(node, Mapping) else None}
    if first and len(node_errors) > 1:
        names = ", ".join(f"#{key} ({value['class_type']})" for key, value in node_errors.items())
        first = {**first, "message": f"{first['message']} ({len(node_errors)} nodes unknown: {names})"}
    return first, node_errors


def _walk_upstream(validator: _PromptValidator, outputs: list[str]) -> list[str]:
    """Check every node the outputs depend on, once each; mark cycles; return them in post-order."""

    def check_then_list_sources(node_id: str) -> list[str]:
        validator.check_node(node_id)
        return validator.upstream(node_id)

    return post_order(outputs, check_then_list_sources, lambda cycle: _mark_cycle(validator, cycle))


def _mark_cycle(validator: _PromptValidator, loop: list[str]) -> None:
    """`loop` is [first, ..., first]: every node on it gets one dependency_cycle error."""
    cycle = loop[:-1]
    for node_id in cycle:
        error = request_error("dependency_cycle", "Dependency cycle detected", f"Node #{node_id} is part of the "
                              f"cycle {' -> '.join(loop)}", {"node_id": node_id, "cycle": cycle})
        existing = validator.errors.setdefault(node_id, [])
        if not any(item["type"] == "dependency_cycle" for item in existing):
            existing.append(error)


def validate_prompt(
    prompt: Any,
    registry: NodeRegistry,
    *,
    folders: Folders | None = None,
    choices: ChoiceLister | None = None,
    partial_targets: list[str] | None = None,
    max_tensor_bytes: int | None = None,
) -> ValidationResult:
    """Validate an API-format prompt; see the module docstring for the semantics.

    `folders` fills folder-backed combos and gives node hooks their context; `choices` may
    override the combo listing (tests). `max_tensor_bytes` is the most a node's outputs may
    take (`--max-tensor-bytes`); None derives it from the machine's memory.
    """
    choices = choices or (folders.choices if folders else no_choices)
    contexts = _context_factory(folders) if folders else None
    if not isinstance(prompt, Mapping) or not prompt:
        error = request_error("invalid_prompt", "Prompt must be a non-empty object of nodes",
                              f"got {type(prompt).__name__}")
        return ValidationResult(False, error, [], {})
    prompt = {str(key): value for key, value in prompt.items()}
    error, node_errors = _unknown_types(prompt, registry)
    if error:
        return ValidationResult(False, error, [], node_errors)
    outputs = [node_id for node_id in prompt if registry.get(prompt[node_id]["class_type"]).output_node]
    if partial_targets is not None and (not isinstance(partial_targets, (list, tuple)) or not all(
            isinstance(target, (str, int)) and not isinstance(target, bool) for target in partial_targets)):
        error = request_error("invalid_prompt", "partial_execution_targets must be a list of node ids",
                              f"got {partial_targets!r}"[:200])
        return ValidationResult(False, error, [], {})
    if partial_targets is not None:
        targets = {str(target) for target in partial_targets}
        outputs = [node_id for node_id in outputs if node_id in targets]
    if not outputs:
        return ValidationResult(False, request_error("prompt_no_outputs", "Prompt has no outputs"), [], {})
    validator = _PromptValidator(prompt, registry, choices, contexts)
    order = _walk_upstream(validator, outputs)
    budget = max_tensor_bytes if max_tensor_bytes is not None else default_max_tensor_bytes()
    too_big = check_budget(order, validator.normalised, validator.spec, contexts=contexts, max_tensor_bytes=budget,
                           skip=lambda node_id: node_id in validator.errors)
    for node_id, error in too_big.items():
        validator.errors.setdefault(node_id, []).append(error)
    valid: dict[str, bool] = {}
    for node_id in order:  # post-order: every upstream is decided before its consumers
        valid[node_id] = node_id not in validator.errors and all(
            valid.get(source, False) for source in validator.upstream(node_id))
    good = [node_id for node_id in outputs if valid[node_id]]
    node_errors = _collect_node_errors(validator, [node_id for node_id in outputs if not valid[node_id]])
    if not good:
        details = "\n".join(f"{item['message']}: {item['details']}"
                            for entry in node_errors.values() for item in entry["errors"])
        error = request_error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details)
        return ValidationResult(False, error, [], node_errors, validator.normalised)
    return ValidationResult(True, None, good, node_errors, validator.normalised)


def _context_factory(folders: Folders) -> ContextFactory:
    """Contexts for hooks that run before execution (validate): folders only, no progress."""
    return lambda node_id: NodeContext(node_id=node_id, display_node_id=node_id, prompt_id="", folders=folders)


def _collect_node_errors(validator: _PromptValidator, failed_outputs: list[str]) -> dict[str, dict[str, Any]]:
    """Group errors by node, listing for each the failed outputs that depend on it."""
    node_errors: dict[str, dict[str, Any]] = {}
    for output in failed_outputs:
        seen = {output}
        frontier = [output]
        while frontier:
            node_id = frontier.pop()
            if node_id in validator.errors:
                entry = node_errors.setdefault(node_id, {
                    "errors": validator.errors[node_id], "dependent_outputs": [],
                    "class_type": validator.prompt[node_id]["class_type"]})
                entry["dependent_outputs"].append(output)
            for source in validator.upstream(node_id):
                if source not in seen:
                    seen.add(source)
                    frontier.append(source)
    return node_errors
