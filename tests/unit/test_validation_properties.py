"""Property tests of the validator on arbitrary prompts (security.md §5.2)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.keys import post_order
from engine.registry import NodeRegistry
from engine.validation import ValidationResult, validate_prompt
from engine.wire import is_link, types_compatible
from tests.fixtures.stub_nodes import stub_registry

REGISTRY: NodeRegistry = stub_registry()
INPUT_NAMES = sorted({item.name for spec in REGISTRY for item in spec.inputs}) + ["zzz"]
NODE_IDS = [str(index) for index in range(8)]

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                      st.text(max_size=8))
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=4), inner, max_size=3), max_leaves=6)
link = st.lists(st.one_of(st.sampled_from(NODE_IDS), st.integers(0, 9)), min_size=1, max_size=1).flatmap(
    lambda source: st.tuples(st.just(source[0]), st.integers(-1, 3)).map(list))
input_value = st.one_of(link, json_value)
# Mostly well-formed nodes, so that most prompts get past the request-level checks and the
# graph walk itself is exercised; malformed class types and inputs still appear regularly.
known_type = st.sampled_from(sorted(spec.id for spec in REGISTRY))
input_dict = st.dictionaries(st.sampled_from(INPUT_NAMES), input_value, max_size=4)
node = st.fixed_dictionaries(
    {"class_type": st.one_of(known_type, known_type, known_type, known_type, known_type, known_type,
                             known_type, known_type, known_type, st.sampled_from(["Unknown", ""]), json_leaf)},
    optional={"inputs": st.one_of(input_dict, input_dict, input_dict, json_value), "_meta": json_value},
)
prompt = st.one_of(st.dictionaries(st.sampled_from(NODE_IDS), node, max_size=6), json_value)
targets = st.one_of(st.none(), st.lists(st.sampled_from(NODE_IDS), max_size=3), json_value)


def _check(result: ValidationResult, raw: Any) -> None:
    json.dumps({"error": result.error, "node_errors": result.node_errors}, default=str)  # the 400 body
    if isinstance(raw, dict):
        assert set(result.node_errors) <= {str(key) for key in raw}
    if not result.ok:
        return
    graph = result.prompt
    assert result.outputs and set(result.outputs) <= set(graph)
    post_order(graph, result.outputs, {})  # raises on a cycle
    for node_id in post_order(graph, result.outputs, {}):
        spec = REGISTRY.get(graph[node_id]["class_type"])
        for name, value in graph[node_id]["inputs"].items():
            item = spec.input(name)
            if item is not None and is_link(value):
                source = REGISTRY.get(graph[value[0]]["class_type"])
                assert types_compatible(source.outputs[value[1]].type, item.type)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=prompt, partial=targets)
def test_validation_never_raises_and_ok_means_runnable(raw: Any, partial: Any) -> None:
    result = validate_prompt(raw, REGISTRY, partial_targets=partial)
    _check(result, raw)


def test_result_does_not_depend_on_key_order() -> None:
    graph = {"a": {"class_type": "StubImage", "inputs": {"content": "WHITE", "height": 2, "width": 2,
                                                         "batch_size": 1}},
             "b": {"class_type": "StubInvert", "inputs": {"image": ["a", 0]}},
             "c": {"class_type": "StubOutput", "inputs": {"value": ["b", 0]}}}
    forward = validate_prompt(graph, REGISTRY)
    backward = validate_prompt(dict(reversed(graph.items())), REGISTRY)
    assert forward.ok and backward.ok and forward.prompt == backward.prompt
