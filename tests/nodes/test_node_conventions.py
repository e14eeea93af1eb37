"""Every node under nodes/ follows the declaration conventions (style.md §12, §16).

Parametrized over a registry discovered at collection time, so a node added later by
anyone gets this coverage without a new test (timm's `test_models.py` pattern).
"""

from __future__ import annotations

import json
import math

import pytest

from engine.paths import Folders
from engine.registry import NodeRegistry, node_info
from engine.spec import NodeSpec


def _discovered_ids() -> list[str]:
    registry = NodeRegistry()
    registry.discover("nodes")
    return [spec.id for spec in registry]


NODE_IDS = _discovered_ids()


@pytest.fixture(params=NODE_IDS)
def spec(request: pytest.FixtureRequest, registry: NodeRegistry) -> NodeSpec:
    found = registry.get(request.param)
    assert found is not None
    return found


def test_discovery_finds_nodes() -> None:
    assert len(NODE_IDS) == len(set(NODE_IDS)) > 0


def test_has_one_line_docstring(spec: NodeSpec) -> None:
    assert spec.description.strip(), f"{spec.id} has no docstring"
    assert "\n" not in spec.description.strip(), f"{spec.id}: the docstring (the tooltip) must be one line"


def test_names_and_category(spec: NodeSpec) -> None:
    assert spec.display_name.strip() and spec.category.strip()
    assert not spec.category.startswith("/") and not spec.category.endswith("/")


def test_object_info_is_json_and_round_trips(spec: NodeSpec, folders: Folders) -> None:
    info = node_info(spec, folders.choices)
    assert json.loads(json.dumps(info, allow_nan=False)) == info
    declared = [item.name for item in spec.inputs if item.kind != "hidden"]
    ordered = [name for kind in ("required", "optional") for name in info["input_order"].get(kind, [])]
    assert ordered == declared


def test_input_names_unique_and_identifiers(spec: NodeSpec) -> None:
    names = [item.name for item in spec.inputs]
    assert len(names) == len(set(names)), f"{spec.id}: duplicate input names {names}"
    assert all(name.isidentifier() for name in names)


def test_defaults_lie_within_bounds(spec: NodeSpec) -> None:
    for item in spec.inputs:
        options, default = item.options, item.default
        where = f"{spec.id}.{item.name}"
        if item.type in ("INT", "FLOAT"):
            assert isinstance(default, (int, float)) and not isinstance(default, bool), where
            assert math.isfinite(default), where
            low, high = options.get("min"), options.get("max")
            assert low is None or high is None or low <= high, where
            assert (low is None or low <= default) and (high is None or default <= high), where
            assert options.get("step", 1) > 0, where
            if item.type == "INT":
                assert isinstance(default, int), where
        elif item.type == "STRING":
            assert isinstance(default, str), where
        elif item.type == "BOOLEAN":
            assert isinstance(default, bool), where
        elif item.is_combo and item.choices is not None:
            assert item.choices, f"{where}: empty combo"
            assert default is None or default in item.choices, where
        elif item.is_combo:
            assert item.choice_source, f"{where}: combo without choices or a source"


def test_tooltips_are_text(spec: NodeSpec) -> None:
    for item in spec.inputs:
        tooltip = item.options.get("tooltip")
        assert tooltip is None or (isinstance(tooltip, str) and tooltip.strip()), f"{spec.id}.{item.name}"


def test_outputs_are_named(spec: NodeSpec) -> None:
    for output in spec.outputs:
        assert output.type and output.type not in ("COMBO",), spec.id
        assert isinstance(output.name, str) and output.name.strip(), spec.id
    names = [output.name for output in spec.outputs]
    assert len(names) == len(set(names)), f"{spec.id}: duplicate output names {names}"


def test_node_without_outputs_is_an_output_node(spec: NodeSpec) -> None:
    # A node with no output sockets and no side effects could never be useful.
    assert spec.outputs or spec.output_node, f"{spec.id} has no outputs and is not an output node"


def test_hooks_match_declared_flags(spec: NodeSpec) -> None:
    hooks = spec.make_hooks()
    assert callable(hooks.run)
    assert (hooks.fingerprint is not None) == spec.has_fingerprint, spec.id
    assert (hooks.validate is not None) == spec.has_validate, spec.id
    if any(item.lazy for item in spec.inputs):
        assert hooks.check_lazy is not None, f"{spec.id} has lazy inputs but no check_lazy hook"
