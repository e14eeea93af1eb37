"""Damaged and old canvas files over HTTP, through the real app: 400s that name the problem,
never a 500, and the server keeps answering; legacy group nodes and the boolean seed toggle
convert; missing core node types are named as such; `GET /flowmill/core_node_types`.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from engine.comfy_core_nodes import COMFYUI_CORE_NODE_TYPES
from tests.unit.test_convert_fuzz import DOCUMENTS, _mangle, _paths

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ui_workflows"


def canvas() -> dict[str, Any]:
    """EmptyImage 1 -> ImageScale 2 -> PreviewImage 3, as a v0.4 canvas of built-in nodes."""
    return {
        "last_node_id": 3, "last_link_id": 2, "version": 0.4,
        "nodes": [
            {"id": 1, "type": "EmptyImage", "mode": 0, "inputs": [],
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1], "slot_index": 0}],
             "widgets_values": [8, 8, 1, 255]},
            {"id": 2, "type": "ImageScale", "mode": 0, "inputs": [{"name": "image", "type": "IMAGE", "link": 1}],
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [2], "slot_index": 0}],
             "widgets_values": ["bilinear", 16, 16, "disabled"]},
            {"id": 3, "type": "PreviewImage", "mode": 0, "inputs": [{"name": "images", "type": "IMAGE", "link": 2}],
             "outputs": [], "widgets_values": []},
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]],
    }


def _changed(change: Any) -> dict[str, Any]:
    workflow = canvas()
    change(workflow)
    return workflow


MALFORMED = [
    ("links is a number", lambda w: w.__setitem__("links", 7), ["'links' must be a list of links", "got number 7"]),
    ("link id is a list", lambda w: w["links"][1].__setitem__(0, [2]), ["its id must be a number or a string"]),
    ("inputs is a number", lambda w: w["nodes"][2].__setitem__("inputs", 5),
     ["node 3 ('PreviewImage')", "'inputs' must be a list of slots, got number 5"]),
    ("link is a list", lambda w: w["nodes"][2]["inputs"][0].__setitem__("link", [1]),
     ["node 3 ('PreviewImage')", "input 'images' has 'link' [1]"]),
    ("outputs is a number", lambda w: w["nodes"][0].__setitem__("outputs", 3),
     ["node 1 ('EmptyImage')", "'outputs' must be a list of slots, got number 3"]),
    ("object where a combo value belongs", lambda w: w["nodes"][1]["widgets_values"].__setitem__(0, {"x": 1}),
     ["node 2 ('ImageScale')", "widget 'upscale_method' expects one of its choices"]),
]


@pytest.mark.parametrize(("case", "change", "fragments"), MALFORMED, ids=[case[0] for case in MALFORMED])
async def test_malformed_canvas_is_a_400_naming_the_problem(client: TestClient, case: str, change: Any,
                                                             fragments: list[str]) -> None:
    workflow = _changed(change)
    queued = await client.post("/prompt", json={"prompt": workflow})
    assert queued.status == 400
    error = (await queued.json())["error"]
    assert error["type"] == "invalid_prompt"
    for fragment in fragments:
        assert fragment in error["details"], (fragment, error)
    converted = await client.post("/api/flowmill/convert", json={"workflow": workflow})
    assert converted.status == 400
    message = (await converted.json())["error"]["message"]
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert (await client.get("/queue")).status == 200  # and the server carries on


async def test_api_prompt_combo_object_and_link_slots(client: TestClient) -> None:
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
              "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": {"a": 1}, "width": 8,
                                                           "height": 8, "crop": "disabled"}},
              "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}}
    response = await client.post("/prompt", json={"prompt": prompt})
    assert response.status == 400
    errors = (await response.json())["node_errors"]["2"]["errors"]
    assert errors[0]["type"] == "value_not_in_list" and errors[0]["extra_info"]["input_name"] == "upscale_method"
    prompt["2"]["inputs"]["upscale_method"] = "bilinear"
    prompt["3"]["inputs"]["images"] = ["2", 0.5]
    response = await client.post("/prompt", json={"prompt": prompt})
    assert response.status == 400
    assert (await response.json())["node_errors"]["3"]["errors"][0]["type"] == "bad_linked_input"
    prompt["3"]["inputs"]["images"] = ["2", 0.0]  # a whole number saved as a float is slot 0
    response = await client.post("/prompt", json={"prompt": prompt})
    assert response.status == 200, await response.text()


async def test_missing_core_node_is_named_as_one(client: TestClient) -> None:
    prompt = {"1": {"class_type": "DualCFGGuider", "inputs": {}, "_meta": {"title": "Guider"}},
              "2": {"class_type": "VHS_VideoCombine", "inputs": {}}}
    response = await client.post("/prompt", json={"prompt": prompt})
    assert response.status == 400
    body = await response.json()
    assert body["error"]["type"] == "missing_node_type"
    assert "Node 'Guider' not found: 'DualCFGGuider' is a ComfyUI core node Flowmill does not have yet" in \
        body["error"]["message"]
    second = body["node_errors"]["2"]["errors"][0]["message"]
    assert "'VHS_VideoCombine' is not a ComfyUI core node: the custom node pack" in second


async def test_legacy_group_node_converts_and_queues(client: TestClient) -> None:
    workflow = canvas()
    workflow["nodes"][1] = {
        "id": 2, "type": "workflow>ScaleThenInvert", "mode": 0,
        "inputs": [{"name": "image", "type": "IMAGE", "link": 1}],
        "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [2]}], "widgets_values": ["area", 12, 10, "center"]}
    workflow["extra"] = {"groupNodes": {"ScaleThenInvert": {
        "nodes": [{"type": "ImageScale", "index": 0, "inputs": [{"name": "image", "type": "IMAGE", "link": None}],
                   "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": []}],
                   "widgets_values": ["bilinear", 16, 16, "disabled"]},
                  {"type": "ImageInvert", "index": 1, "inputs": [{"name": "image", "type": "IMAGE", "link": None}],
                   "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": []}]}],
        "links": [[None, 0, 0, 0, 1, "IMAGE"], [0, 0, 1, 0, 9, "IMAGE"]], "external": [], "config": {}}}}
    response = await client.post("/api/flowmill/convert", json={"workflow": workflow})
    assert response.status == 200, await response.text()
    prompt = await response.json()
    assert prompt["2:0"]["inputs"] == {"upscale_method": "area", "width": 12, "height": 10, "crop": "center",
                                       "image": ["1", 0]}
    assert prompt["2:1"]["inputs"] == {"image": ["2:0", 0]} and prompt["3"]["inputs"] == {"images": ["2:1", 0]}
    queued = await client.post("/prompt", json={"prompt": workflow})
    assert queued.status == 200, await queued.text()


async def test_legacy_seed_toggle_file_converts(client: TestClient) -> None:
    workflow = json.loads((FIXTURES / "legacy_seed_toggle_v04.json").read_text())
    response = await client.post("/flowmill/convert", json={"workflow": workflow})
    # The checkpoint named in the file is not installed here: conversion still succeeds,
    # because naming the widget values needs only the node types.
    assert response.status == 200, await response.text()
    sampler = (await response.json())["3"]["inputs"]
    assert (sampler["seed"], sampler["steps"], sampler["cfg"], sampler["sampler_name"]) == (8566257, 20, 8, "euler")


async def test_core_node_types_route(client: TestClient) -> None:
    for path in ("/flowmill/core_node_types", "/api/flowmill/core_node_types"):
        response = await client.get(path)
        assert response.status == 200
        body = await response.json()
        assert list(body) == ["types"] and body["types"] == sorted(COMFYUI_CORE_NODE_TYPES)
        assert "KSampler" in body["types"] and "VHS_VideoCombine" not in body["types"]


async def test_a_sample_of_mangled_canvases_never_gets_a_500(client: TestClient) -> None:
    chooser = random.Random(13)
    values = [7, [1], 5, None, "x", {"a": 1}, 0.5, [1, 0], -1, True, [[1]], {"name": 3}, 1e308, ""]
    documents = [canvas(), *DOCUMENTS.values()]
    statuses = set()
    for _ in range(60):
        document = chooser.choice(documents)
        path = chooser.choice(_paths(document))
        mangled = _mangle(document, path, chooser.choice(["replace", "remove", "add"]), copy.deepcopy(
            chooser.choice(values)))
        for route, body in (("/api/flowmill/convert", {"workflow": mangled}), ("/prompt", {"prompt": mangled})):
            response = await client.post(route, json=body)
            statuses.add(response.status)
            assert response.status in (200, 400), (route, path, await response.text())
            if response.status == 400:
                assert (await response.json())["error"]["message"]
    assert statuses == {200, 400}
