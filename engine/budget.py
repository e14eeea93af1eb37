"""The resource budget: how big a node's outputs will be, known before anything is queued.

Nodes that create or resize tensors declare an `estimate=` hook (engine/node_api.py): a
function of the node's literal inputs and the estimates of its linked inputs that returns
the estimate of each output: a `TensorEstimate` for a tensor, or the value itself when the
node knows it before running (the primitive nodes pass their constant on, so a width wired
from an Int node is still known). Validation walks the graph sources first, feeding each
node the estimates of its sources, and refuses a node whose outputs together would exceed
`max_tensor_bytes`, with a ComfyUI-shaped error naming the node, its inputs and the estimate
in human units. A 12 TiB `EmptyImage` is refused in microseconds instead of failing (or
summoning the OOM killer) when the worker tries to allocate it.

Estimates are advisory: a node without a hook, a hook input whose estimate is unknown, or
a hook that raises simply makes the estimate unknown (None), never an error; a hook is only
called when every input it names is known. The budget applies per node, to the tensors it
creates; memory that a node needs while it runs is not estimated.

This module also derives the default budget from the machine's memory; byte sizes are
parsed and printed by engine/sizes.py. It imports no server code and keeps no module-level
mutable state.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import psutil

from engine.context import NodeContext
from engine.graph_walk import post_order
from engine.node_call import accepted_arguments
from engine.sizes import format_bytes
from engine.spec import NodeSpec
from engine.wire import is_link

log = logging.getLogger(__name__)

BUDGET_ERROR = "tensor_budget_exceeded"
_DTYPE_NAMES = {1: "uint8", 2: "float16", 4: "float32", 8: "float64"}


@dataclass(frozen=True)
class TensorEstimate:
    """The size of one output value: `items` tensors (ComfyUI's item list) of `shape`.

    `itemsize` is bytes per element (4 for float32). For a LATENT the shape is its
    "samples" tensor's. Shapes are plain ints and may be astronomically large: nothing is
    allocated, only multiplied.
    """

    shape: tuple[int, ...]
    itemsize: int = 4
    items: int = 1

    @property
    def bytes(self) -> int:
        return self.items * math.prod(self.shape) * self.itemsize

    def per_item(self) -> TensorEstimate:
        """One item of the list, as a node called once per item sees it."""
        return replace(self, items=1)

    def describe(self) -> str:
        dims = " x ".join(str(size) for size in self.shape)
        dtype = _DTYPE_NAMES.get(self.itemsize, f"{self.itemsize}-byte")
        text = f"[{dims}] {dtype}"
        return f"{self.items} x {text}" if self.items > 1 else text

    def as_json(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "itemsize": self.itemsize, "items": self.items, "bytes": self.bytes}


def default_max_tensor_bytes(device: Any = None) -> int:
    """Half of the machine's RAM, and no more than the GPU's memory when running on one.

    Intermediates (images, decoded frames, cached outputs) live in RAM; latents being
    sampled live on the device. Half leaves room for the models and the copies a node makes
    while it runs.
    """
    budget = psutil.virtual_memory().total // 2
    if device is not None and getattr(device, "type", None) == "cuda":
        import torch  # only when a GPU is in use

        budget = min(budget, torch.cuda.get_device_properties(device).total_memory)
    return budget


# --- propagation through a graph ------------------------------------------------------------

# Per output: a TensorEstimate, a statically known value (a primitive's constant), or None.
Estimates = tuple[Any, ...]
ContextFactory = Callable[[str], NodeContext]


def _as_outputs(spec: NodeSpec, result: Any) -> Estimates:
    """A hook's return value (one estimate, or a tuple with one per output) -> one per output."""
    spread = isinstance(result, tuple) and (len(spec.outputs) != 1 or len(result) == 1)
    values = list(result) if spread else [result]
    return tuple((values + [None] * len(spec.outputs))[: len(spec.outputs)])


def _total_bytes(outputs: Estimates) -> int:
    return sum(item.bytes for item in outputs if isinstance(item, TensorEstimate))


@dataclass
class _GraphEstimator:
    """The estimates of one prompt's nodes, computed sources first."""

    nodes: Mapping[str, Mapping[str, Any]]
    spec_of: Callable[[str], NodeSpec]
    contexts: ContextFactory | None
    known: dict[str, Estimates] = field(default_factory=dict)

    def linked(self, value: list[Any]) -> Any:
        source = self.known.get(str(value[0]))
        slot = int(value[1])
        return source[slot] if source is not None and 0 <= slot < len(source) else None

    def estimate(self, node_id: str) -> Estimates:
        """Estimate and remember `node_id`'s outputs (all unknown when it has no hook)."""
        spec = self.spec_of(node_id)
        outputs: Estimates = (None,) * len(spec.outputs)
        if spec.has_estimate:
            outputs = self._call_hook(node_id, spec)
        self.known[node_id] = outputs
        return outputs

    def forget(self, node_id: str) -> None:
        """Treat a refused node's outputs as unknown, so its consumers are not refused too."""
        self.known[node_id] = (None,) * len(self.spec_of(node_id).outputs)

    def inputs_of(self, node_id: str, spec: NodeSpec) -> tuple[dict[str, Any], int]:
        """The hook's arguments (linked inputs as estimates) and how many calls the node makes."""
        arguments: dict[str, Any] = {}
        calls = 1
        for name, value in (self.nodes[node_id].get("inputs") or {}).items():
            if not is_link(value):
                arguments[name] = value
                continue
            linked = self.linked(value)
            if isinstance(linked, TensorEstimate) and not spec.input_is_list:
                calls = max(calls, linked.items)  # ComfyUI calls the node once per item
                linked = linked.per_item()
            arguments[name] = linked
        return arguments, calls

    def _call_hook(self, node_id: str, spec: NodeSpec) -> Estimates:
        hooks = spec.make_hooks()
        if hooks.estimate is None or (hooks.estimate_wants_context and self.contexts is None):
            return (None,) * len(spec.outputs)
        arguments, calls = self.inputs_of(node_id, spec)
        arguments = accepted_arguments(hooks.estimate, arguments)
        if any(value is None for value in arguments.values()):
            return (None,) * len(spec.outputs)  # an input of unknown size: so is the output
        args = [self.contexts(node_id)] if hooks.estimate_wants_context and self.contexts else []
        try:
            result = hooks.estimate(*args, **arguments)
        except Exception:  # an estimate is advice: a broken one must not refuse a valid prompt
            log.warning("the size estimate of node %s (%s) failed; its size is unknown", node_id, spec.id,
                        exc_info=True)
            return (None,) * len(spec.outputs)
        outputs = _as_outputs(spec, result)
        return tuple(replace(item, items=item.items * calls) if isinstance(item, TensorEstimate) else item
                     for item in outputs)


def _describe_input(value: Any) -> str:
    if isinstance(value, TensorEstimate):
        return value.describe()
    if value is None:
        return "unknown size"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def budget_error(spec: NodeSpec, arguments: Mapping[str, Any], outputs: Estimates,
                 max_tensor_bytes: int) -> dict[str, Any]:
    """ComfyUI's error shape, naming the node, its inputs and the estimate in human units."""
    total = _total_bytes(outputs)
    created = ", ".join(f"{output.name} {item.describe()}" for output, item in zip(spec.outputs, outputs, strict=True)
                        if isinstance(item, TensorEstimate))
    inputs = ", ".join(f"{name}={_describe_input(value)}" for name, value in arguments.items())
    message = (f"{spec.display_name} would create {format_bytes(total)} of tensors, more than the budget of "
               f"{format_bytes(max_tensor_bytes)} per node (raise it with --max-tensor-bytes)")
    return {
        "type": BUDGET_ERROR,
        "message": message,
        "details": f"{created} from inputs {inputs}",
        "extra_info": {
            "estimated_bytes": total,
            "estimated_size": format_bytes(total),
            "max_tensor_bytes": max_tensor_bytes,
            "outputs": {output.name: item.as_json() for output, item in zip(spec.outputs, outputs, strict=True)
                        if isinstance(item, TensorEstimate)},
            "inputs": {name: value.as_json() if isinstance(value, TensorEstimate) else value
                       for name, value in arguments.items()},
        },
    }


def estimate_prompt(nodes: Mapping[str, Mapping[str, Any]], spec_of: Callable[[str], NodeSpec], *,
                    contexts: ContextFactory | None = None) -> dict[str, Estimates]:
    """The estimate of every output of every node of a validated (normalised, acyclic) prompt."""

    def sources(node_id: str) -> list[str]:
        return [str(value[0]) for value in (nodes[node_id].get("inputs") or {}).values()
                if is_link(value) and str(value[0]) in nodes]

    def refuse(cycle: list[str]) -> None:
        raise ValueError(f"the prompt has a cycle through {' -> '.join(cycle)}; validate it first")

    estimator = _GraphEstimator(nodes, spec_of, contexts)
    for node_id in post_order(list(nodes), sources, refuse):
        estimator.estimate(node_id)
    return estimator.known


def check_budget(order: Sequence[str], nodes: Mapping[str, Mapping[str, Any]], spec_of: Callable[[str], NodeSpec],
                 *, skip: Callable[[str], bool], contexts: ContextFactory | None,
                 max_tensor_bytes: int) -> dict[str, dict[str, Any]]:
    """One budget error per node in `order` (sources first) whose outputs exceed the budget.

    `nodes` are the normalised API-format nodes (coerced literals); `skip(node_id)` is true
    for nodes that already failed validation, whose sizes count as unknown downstream.
    """
    estimator = _GraphEstimator(nodes, spec_of, contexts)
    errors: dict[str, dict[str, Any]] = {}
    for node_id in order:
        if skip(node_id) or node_id not in nodes:
            estimator.known[node_id] = ()
            continue
        outputs = estimator.estimate(node_id)
        if _total_bytes(outputs) > max_tensor_bytes:
            spec = spec_of(node_id)
            arguments, _ = estimator.inputs_of(node_id, spec)
            errors[node_id] = budget_error(spec, arguments, outputs, max_tensor_bytes)
            estimator.forget(node_id)
    return errors
