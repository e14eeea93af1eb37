"""The canvas converter on damaged files: a ConversionError naming the problem, never a crash.

Shared canvas files reach the server through POST /prompt, /flowmill/convert and `main.py
run`; any exception other than ConversionError (a ValueError) would be a 500 there. The
named cases are the shapes an audit sent (`"links": 7`, a link id that is a list, `"inputs":
5`, `"link": [1]`, `"outputs": 3`, an object where a combo value belongs); the property test
takes valid documents (the fixtures, old and new formats, subgraphs and group nodes) and
replaces, removes or adds one field anywhere in them with arbitrary JSON, and allows only
two outcomes: an API prompt, or a ConversionError with a message.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.convert import ConversionError, load_workflow, ui_to_api

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ui_workflows"
OBJECT_INFO = json.loads((FIXTURES / "object_info.json").read_text())
DOCUMENTS = {name: json.loads((FIXTURES / name).read_text()) for name in (
    "txt2img_v04.json", "img2img_v1.json", "subgraph_v04.json", "legacy_seed_toggle_v04.json",
    "legacy_group_node_v04.json")}


def _txt2img() -> dict[str, Any]:
    return copy.deepcopy(DOCUMENTS["txt2img_v04.json"])


def _node(workflow: dict[str, Any], node_id: int) -> dict[str, Any]:
    return next(node for node in workflow["nodes"] if node["id"] == node_id)


def _set(change: Any) -> dict[str, Any]:
    workflow = _txt2img()
    change(workflow)
    return workflow


AUDIT_CASES = [
    ("links is a number", lambda w: w.__setitem__("links", 7),
     ["the workflow's 'links' must be a list of links", "got number 7"]),
    ("link id is a list", lambda w: w["links"][0].__setitem__(0, [1]),
     ["malformed link [[1], ", "its id must be a number or a string", "got list [1]"]),
    ("node inputs is a number", lambda w: _node(w, 9).__setitem__("inputs", 5),
     ["node 9 ('SaveImage')", "'inputs' must be a list of slots", "got number 5"]),
    ("input link is a list", lambda w: _node(w, 9)["inputs"][0].__setitem__("link", [1]),
     ["node 9 ('SaveImage')", "input 'images' has 'link' [1]", "expected a link id or null, got list"]),
    ("node outputs is a number", lambda w: _node(w, 6).__setitem__("outputs", 3),
     ["node 6 ('VAEDecode')", "'outputs' must be a list of slots", "got number 3"]),
    ("output links is a number", lambda w: _node(w, 6)["outputs"][0].__setitem__("links", 9),
     ["node 6 ('VAEDecode')", "'links' 9", "expected a list of link ids"]),
    ("object where a combo value belongs", lambda w: _node(w, 5)["widgets_values"].__setitem__(4, {"a": 1}),
     ["node 5 ('KSampler')", "widget 'sampler_name' expects one of its choices", "got an object {\"a\": 1}"]),
    ("object combo in named widgets_values", lambda w: _node(w, 11).__setitem__(
        "widgets_values", {"upscale_method": {"x": 1}, "width": 8, "height": 8, "crop": "center"}),
     ["node 11 ('ImageScale')", "widget 'upscale_method' expects one of its choices"]),
    ("fractional link slot", lambda w: w["links"][0].__setitem__(2, 0.5), ["slots must be whole numbers", "0.5"]),
    ("infinite link slot", lambda w: w["links"][0].__setitem__(4, math.inf), ["slots must be whole numbers"]),
    ("negative link slot", lambda w: w["links"][0].__setitem__(2, -1), ["slots must be whole numbers from 0", "-1"]),
    ("node id is an object", lambda w: _node(w, 9).__setitem__("id", {"n": 9}),
     ["malformed node", "it needs an 'id' (a number or string)"]),
    ("definitions is a list", lambda w: w.__setitem__("definitions", [1]), ["'definitions' must be an object"]),
    ("subgraphs is a number", lambda w: w.__setitem__("definitions", {"subgraphs": 4}),
     ["'definitions.subgraphs' must be a list"]),
    ("input slot is a string", lambda w: _node(w, 9)["inputs"].__setitem__(0, "images"),
     ["node 9 ('SaveImage')", "input slot 0 must be an object", "got string \"images\""]),
    ("widgets_values is a number", lambda w: _node(w, 9).__setitem__("widgets_values", 3),
     ["node 9 ('SaveImage')", "'widgets_values' must be a list or an object", "got number 3"]),
]


@pytest.mark.parametrize(("case", "change", "fragments"), AUDIT_CASES, ids=[case[0] for case in AUDIT_CASES])
def test_audit_shapes_raise_a_conversion_error_naming_the_problem(case: str, change: Any,
                                                                  fragments: list[str]) -> None:
    with pytest.raises(ConversionError) as raised:
        ui_to_api(_set(change), OBJECT_INFO)
    for fragment in fragments:
        assert fragment in str(raised.value), (fragment, str(raised.value))


def test_api_prompt_float_slot_is_read_as_the_whole_number() -> None:
    prompt = load_workflow({"1": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
                            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0.0]}}}, OBJECT_INFO)
    assert prompt["2"]["inputs"]["image"] == ["1", 0]


# ---------------------------------------------------------------- property: mangled documents

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=8,
)
# Values shaped like the ones that belong in a canvas, so mangled documents get deep.
NEAR_MISSES = st.sampled_from([0, 1, 2, 4, -1, -10, "1", "5:7", "", [1], [1, 0], [None], {}, {"name": "x"},
                               [1, 1, 0, 9, 0, "IMAGE"], [1, 1, 0], "workflow>EncodeAndSample", "Reroute",
                               "PrimitiveNode", True, 0.0, 1e308, None])


def _paths(document: Any) -> list[tuple[Any, ...]]:
    """Every key path in a JSON document (iteratively: documents nest deeply)."""
    found: list[tuple[Any, ...]] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [((), document)]
    while stack:
        path, value = stack.pop()
        found.append(path)
        if isinstance(value, dict):
            stack.extend((path + (key,), child) for key, child in value.items())
        elif isinstance(value, list):
            stack.extend((path + (index,), child) for index, child in enumerate(value))
    return found


def _mangle(document: dict[str, Any], path: tuple[Any, ...], action: str, value: Any) -> dict[str, Any]:
    mangled = copy.deepcopy(document)
    if not path:
        return mangled
    parent = mangled
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if action == "replace":
        parent[last] = value
    elif action == "remove":
        del parent[last]
    elif isinstance(parent[last], list):
        parent[last].append(value)
    elif isinstance(parent[last], dict):
        parent[last]["mangled"] = value
    else:
        parent[last] = [parent[last], value]
    return mangled


def _convert_or_refuse(document: Any) -> None:
    try:
        prompt = ui_to_api(document, OBJECT_INFO)
    except ConversionError as error:
        assert str(error).strip(), "a conversion error must say what is wrong"
        return
    assert isinstance(prompt, dict)
    for node_id, node in prompt.items():
        assert isinstance(node_id, str) and isinstance(node["class_type"], str) and isinstance(node["inputs"], dict)
    json.dumps(prompt, allow_nan=True)  # what /prompt and /flowmill/convert send back must serialise


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(DOCUMENTS)), data=st.data(),
       action=st.sampled_from(["replace", "replace", "remove", "add"]), value=JSON_VALUES | NEAR_MISSES)
def test_mangled_canvas_documents_convert_or_raise_a_conversion_error(name: str, data: Any, action: str,
                                                                      value: Any) -> None:
    document = DOCUMENTS[name]
    path = data.draw(st.sampled_from(_paths(document)), label="path")
    _convert_or_refuse(_mangle(document, path, action, value))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(DOCUMENTS)), data=st.data(), values=st.lists(NEAR_MISSES | JSON_VALUES,
                                                                                 min_size=2, max_size=4))
def test_several_damaged_fields_at_once_still_convert_or_raise(name: str, data: Any, values: list[Any]) -> None:
    document = DOCUMENTS[name]
    for value in values:
        path = data.draw(st.sampled_from(_paths(document)), label="path")
        document = _mangle(document, path, "replace", value)
    _convert_or_refuse(document)


@settings(max_examples=200, deadline=None)
@given(document=st.dictionaries(st.sampled_from(["nodes", "links", "version", "extra", "definitions"]),
                                JSON_VALUES | NEAR_MISSES, min_size=1))
def test_arbitrary_top_level_shapes_convert_or_raise(document: dict[str, Any]) -> None:
    document.setdefault("nodes", [])
    if not isinstance(document["nodes"], list):
        document["nodes"] = [document["nodes"]]
    _convert_or_refuse(document)
