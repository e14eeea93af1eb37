"""GraphBuilder: ids, links, input removal, finalize shape and the ambient default prefix.

Tests that touch the default prefix run inside `contextvars.copy_context()` so the value
they set cannot leak into other tests.
"""

from __future__ import annotations

import contextvars
from typing import Any

import pytest

from engine.graph_builder import GraphBuilder, Node, default_prefix, is_link, node_call_prefix


def _isolated(function: Any) -> Any:
    return contextvars.copy_context().run(function)


def test_ids_are_prefixed_counters_or_given() -> None:
    graph = GraphBuilder(prefix="test.")
    first = graph.node("StubImage", content="WHITE")
    second = graph.node("StubImage")
    named = graph.node("StubMask", id="mask")
    assert (first.get_id(), second.get_id(), named.id) == ("test.1", "test.2", "test.mask")
    assert isinstance(first, Node) and first.class_type == "StubImage"


def test_an_existing_id_returns_the_same_node() -> None:
    graph = GraphBuilder(prefix="")
    node = graph.node("A", id="x", value=1)
    assert graph.node("B", id="x", value=2) is node
    assert graph.finalize() == {"x": {"class_type": "A", "inputs": {"value": 1}}}


def test_out_makes_links() -> None:
    graph = GraphBuilder(prefix="p.")
    source = graph.node("StubImage")
    consumer = graph.node("Invert", image=source.out(0))
    assert source.out(2) == ["p.1", 2]
    assert is_link(consumer.get_input("image"))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["5", 0], True),
        (["5", 1.0], True),
        (("5", 0), False),  # a tuple is a literal, not a link
        ([5, 0], True),  # one rule project-wide (engine/wire.py): some clients save ids as ints
        (["5", "0"], False),
        (["5", True], False),
        (["5", 0, 1], False),
        ("5", False),
        (None, False),
    ],
)
def test_is_link(value: Any, expected: bool) -> None:
    assert is_link(value) is expected


def test_set_input_none_removes_and_keyword_none_is_kept() -> None:
    graph = GraphBuilder(prefix="")
    node = graph.node("Open", condition=True, initial_value0=None)
    node.set_input("extra", 3)
    node.set_input("condition", None)
    node.set_input("never_set", None)
    assert node.inputs == {"initial_value0": None, "extra": 3}


def test_lookup_and_remove_use_the_unprefixed_id() -> None:
    graph = GraphBuilder(prefix="loop.")
    node = graph.node("Close", id="Recurse")
    assert graph.lookup_node("Recurse") is node
    assert graph.lookup_node("loop.Recurse") is None
    graph.remove_node("Recurse")
    assert graph.lookup_node("Recurse") is None and graph.finalize() == {}
    with pytest.raises(KeyError, match="Recurse"):
        graph.remove_node("Recurse")


def test_finalize_shape_and_display_override() -> None:
    graph = GraphBuilder(prefix="g.")
    image = graph.node("StubImage", content="BLACK", height=8)
    invert = graph.node("Invert", image=image.out(0))
    invert.set_override_display_id("12")
    assert graph.finalize() == {
        "g.1": {"class_type": "StubImage", "inputs": {"content": "BLACK", "height": 8}},
        "g.2": {"class_type": "Invert", "inputs": {"image": ["g.1", 0]}, "override_display_id": "12"},
    }


def test_finalize_returns_a_snapshot() -> None:
    graph = GraphBuilder(prefix="")
    node = graph.node("A", value=1)
    finalized = graph.finalize()
    node.set_input("value", 2)
    assert finalized["1"]["inputs"] == {"value": 1}


def test_replace_node_output() -> None:
    graph = GraphBuilder(prefix="r.")
    source = graph.node("Source")
    sink = graph.node("Sink", a=source.out(0), b=source.out(1))
    graph.replace_node_output("1", 0, 42)
    graph.replace_node_output("1", 1, None)
    assert sink.inputs == {"a": 42}


def test_default_prefix_without_a_scope_follows_comfyui() -> None:
    def build() -> list[str]:
        return [GraphBuilder().prefix, GraphBuilder().prefix, GraphBuilder.alloc_prefix(root="x")]

    assert _isolated(build) == [".0.0.", ".0.1.", "x.0.2."]


def test_default_prefix_scope_is_restored() -> None:
    def build() -> tuple[list[str], str]:
        with default_prefix("5", 2):
            inside = [GraphBuilder().prefix, GraphBuilder().prefix]
        return inside, GraphBuilder().prefix

    assert _isolated(build) == (["5.2.0.", "5.2.1."], ".0.0.")


def test_set_default_prefix_classmethod() -> None:
    def build() -> list[str]:
        GraphBuilder.set_default_prefix("9", 1, 4)
        graph = GraphBuilder()
        return [graph.prefix, graph.node("A").id]

    assert _isolated(build) == ["9.1.4.", "9.1.4.1"]


def test_node_call_prefix_keeps_a_callers_scope() -> None:
    def build() -> list[str]:
        prefixes = []
        with node_call_prefix("7"):
            prefixes.append(GraphBuilder().prefix)
        with node_call_prefix("7"):
            prefixes.append(GraphBuilder().prefix)  # starts again at graph index 0
        with default_prefix("7", 3), node_call_prefix("7"):
            prefixes.append(GraphBuilder().prefix)  # the executor's call index survives
        with default_prefix("6", 3), node_call_prefix("7"):
            prefixes.append(GraphBuilder().prefix)  # another node's scope does not
        prefixes.append(GraphBuilder().prefix)
        return prefixes

    assert _isolated(build) == ["7.0.0.", "7.0.0.", "7.3.0.", "7.0.0.", ".0.0."]
