"""What a node receives: its inputs for this run, assembled from links, literals and hidden values.

Every input is a list of items (ComfyUI's list semantics): a link gives the source's item
list, a literal gives a one-item list, and a lazy input that nobody asked for yet gives
[None]. Hidden inputs the executor owns (the prompt, the node id, ...) are filled here, and
links into undeclared inputs of `**kwargs` nodes are passed along, as ComfyUI does.
"""

from __future__ import annotations

from typing import Any

from engine.run_state import DynamicPrompt, Run
from engine.spec import HIDDEN_DYNPROMPT, HIDDEN_EXTRA_PNGINFO, HIDDEN_PROMPT, HIDDEN_UNIQUE_ID, NodeSpec
from engine.wire import is_link

# Hidden inputs the executor fills itself; any other hidden input reads the prompt like an
# optional input (ComfyUI loop nodes keep state in such inputs).
FILLED_HIDDEN = frozenset({HIDDEN_UNIQUE_ID, HIDDEN_PROMPT, HIDDEN_EXTRA_PNGINFO, HIDDEN_DYNPROMPT,
                           "AUTH_TOKEN_COMFY_ORG", "API_KEY_COMFY_ORG"})


def gather_inputs(run: Run, node_id: str, spec: NodeSpec) -> dict[str, list[Any]]:
    """Each declared input as a list of items; lazy inputs not yet evaluated are [None]."""
    raw = run.nodes[node_id].get("inputs") or {}
    inputs: dict[str, list[Any]] = {}
    for item in spec.inputs:
        if item.kind == "hidden" and item.type in FILLED_HIDDEN:
            inputs[item.name] = [hidden_value(run, node_id, item.type)]
        elif item.name in raw:
            value = raw[item.name]
            if is_link(value) and not item.options.get("rawLink"):
                source, slot = str(value[0]), value[1]
                inputs[item.name] = run.values[source][slot] if source in run.values else [None]
            else:
                inputs[item.name] = [value]
    if spec.takes_undeclared_inputs:
        # ComfyUI passes links into undeclared inputs on to `**kwargs` nodes (variadic V1 nodes).
        for name, value in raw.items():
            if name not in inputs and spec.input(name) is None and is_link(value):
                source, slot = str(value[0]), value[1]
                inputs[name] = run.values[source][slot] if source in run.values else [None]
    return inputs


def filled_hidden(run: Run, node_id: str, spec: NodeSpec) -> dict[str, Any]:
    """The hidden inputs the executor supplies (prompt, unique id, ...), by input name."""
    return {item.name: hidden_value(run, node_id, item.type) for item in spec.inputs
            if item.kind == "hidden" and item.type in FILLED_HIDDEN}


def hidden_value(run: Run, node_id: str, kind: str) -> Any:
    if kind == HIDDEN_UNIQUE_ID:
        return node_id
    if kind == HIDDEN_PROMPT:
        return run.request.prompt
    if kind == HIDDEN_EXTRA_PNGINFO:
        return run.request.extra_data.get("extra_pnginfo")
    if kind == HIDDEN_DYNPROMPT:
        return DynamicPrompt(run.nodes, run.request.prompt)
    return None  # API keys are never kept in extra_data (they are split out on submission)


def is_deferred(spec: NodeSpec, name: str) -> bool:
    """Links not pulled up front: lazy inputs (until asked for) and rawLink inputs (never)."""
    item = spec.input(name)
    return item is not None and (item.lazy or bool(item.options.get("rawLink")))


def resolve_link(run: Run, link: list[Any]) -> Any:
    """The value an expansion's result link stands for: the single item, or the item list."""
    items = run.values[str(link[0])][link[1]]
    return items[0] if len(items) == 1 else items
