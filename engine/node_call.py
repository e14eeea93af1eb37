"""ComfyUI's list semantics for one node: slicing inputs into calls and merging results.

Every input is internally a list of items. A node is called once per index (shorter lists
repeat their last item) unless it takes whole lists (`input_is_list`). Outputs are gathered
per slot: an `is_list` output's returned list is flattened into the item stream. An
`ExecutionBlocker` among a call's inputs replaces that call's outputs with the blocker.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch

from engine.spec import ExecutionBlocker, NodeOutput, NodeSpec


class NodeContractError(RuntimeError):
    """A node returned something its declaration does not allow."""


def slice_calls(spec: NodeSpec, inputs: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """The keyword arguments of each call the node must make."""
    if spec.input_is_list:
        return [dict(inputs)]
    if any(len(items) == 0 for items in inputs.values()):
        return []  # an empty upstream list: nothing to map over
    count = max((len(items) for items in inputs.values()), default=1)
    return [{name: items[min(index, len(items) - 1)] for name, items in inputs.items()} for index in range(count)]


def accepted_arguments(hook: Callable[..., Any], arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments a hook declares (all of them if it takes **kwargs).

    Hooks (fingerprint, check_lazy, validate) often name only the inputs they look at; passing
    the rest would raise TypeError, which for a fingerprint would silently mean "always
    re-run".
    """
    parameters = inspect.signature(hook).parameters
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values()):
        return dict(arguments)
    return {name: value for name, value in arguments.items() if name in parameters}


def find_blocker(spec: NodeSpec, arguments: Mapping[str, Any]) -> ExecutionBlocker | None:
    for value in arguments.values():
        if isinstance(value, ExecutionBlocker):
            return value
        if spec.input_is_list and isinstance(value, list):
            for item in value:
                if isinstance(item, ExecutionBlocker):
                    return item
    return None


def _values_of(spec: NodeSpec, result: Any) -> tuple[Any, ...]:
    if isinstance(result, ExecutionBlocker):
        return (result,) * len(spec.outputs)
    values = result.values if isinstance(result, NodeOutput) else result
    if not isinstance(values, tuple):
        values = tuple(values) if isinstance(values, list) else (values,)
    if len(values) < len(spec.outputs):
        raise NodeContractError(
            f"node {spec.id} returned {len(values)} values but declares {len(spec.outputs)} outputs "
            f"({', '.join(output.name for output in spec.outputs)})"
        )
    return values


def merge_ui(target: dict[str, list[Any]] | None, ui: Mapping[str, Any] | None) -> dict[str, list[Any]] | None:
    """Concatenate the per-call `ui` dicts key by key, as ComfyUI does."""
    if not ui:
        return target
    merged = dict(target or {})
    for key, value in ui.items():
        items = value if isinstance(value, list) else [value]
        merged[key] = merged.get(key, []) + items
    return merged


def merge_results(spec: NodeSpec, results: list[Any]) -> tuple[list[list[Any]], dict[str, Any] | None]:
    """Per-slot item lists and the merged ui of a node's calls."""
    outputs: list[list[Any]] = [[] for _ in spec.outputs]
    ui: dict[str, Any] | None = None
    for result in results:
        values = _values_of(spec, result)
        if isinstance(result, NodeOutput):
            ui = merge_ui(ui, result.ui)
        for slot, output in enumerate(spec.outputs):
            value = values[slot]
            if output.is_list and isinstance(value, (list, tuple)):
                outputs[slot].extend(value)
            else:
                outputs[slot].append(value)
    return outputs, ui


def describe_value(value: Any) -> Any:
    """A JSON-safe, short description of an input for error reports."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value if len(value) <= 200 else value[:200] + "..."
    if isinstance(value, torch.Tensor):
        return f"Tensor(shape={list(value.shape)}, dtype={value.dtype}, device={value.device})"
    return type(value).__name__
