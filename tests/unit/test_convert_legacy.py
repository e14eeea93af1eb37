"""Older canvas files the converter must open: the boolean seed toggle, stray trailing widget
values, legacy group nodes (`workflow/NAME`, `workflow>NAME`), and the naming of node types
this server lacks (a ComfyUI core node Flowmill does not have yet, or a custom pack's).

The fixtures in tests/fixtures/ui_workflows/legacy_*.json are hand-written in the shapes the
2023-2024 frontends saved (no file is copied from ComfyUI_examples).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from engine.comfy_core_nodes import COMFYUI_CORE_NODE_TYPES, describe_missing_type, is_comfyui_core_node
from engine.convert import ConversionError, ui_to_api, unknown_node_types

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ui_workflows"
OBJECT_INFO = json.loads((FIXTURES / "object_info.json").read_text())


def _load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def _node(workflow: dict[str, Any], node_id: int) -> dict[str, Any]:
    return next(node for node in workflow["nodes"] if node["id"] == node_id)


# ---------------------------------------------------------------- seed toggle and stray values


def test_boolean_seed_control_is_read_as_the_control_value() -> None:
    prompt = ui_to_api(_load("legacy_seed_toggle_v04.json"), OBJECT_INFO)
    assert prompt["3"]["inputs"] | {} == {
        "seed": 8566257, "steps": 20, "cfg": 8, "sampler_name": "euler", "scheduler": "normal", "denoise": 1,
        "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}
    # `false` (the toggle off) lines up the same way
    second = prompt["10"]["inputs"]
    assert (second["seed"], second["steps"], second["cfg"], second["denoise"]) == (42, 12, 6.5, 0.6)
    assert prompt["10"]["_meta"]["title"] == "Second pass"


def test_trailing_empty_widget_value_is_ignored_as_the_frontend_does() -> None:
    prompt = ui_to_api(_load("legacy_seed_toggle_v04.json"), OBJECT_INFO)
    assert prompt["9"]["inputs"] == {"filename_prefix": "ComfyUI", "images": ["8", 0]}


def test_shifted_values_name_the_value_that_does_not_fit_not_the_last_one() -> None:
    workflow = _load("legacy_seed_toggle_v04.json")
    _node(workflow, 3)["widgets_values"] = [8566257, "sometimes", 20, 8, "euler", "normal", 1]
    with pytest.raises(ConversionError) as raised:
        ui_to_api(workflow, OBJECT_INFO)
    message = str(raised.value)
    assert "node 3 ('KSampler')" in message
    assert "\"sometimes\" cannot be the value of 'steps' (INT)" in message
    assert "are left over" not in message


def test_a_boolean_is_still_a_value_where_a_boolean_widget_needs_it() -> None:
    # ImageCompositeMasked: x, y (INT), resize_source (BOOLEAN): the `false` is resize_source,
    # not y's control value, because the count only reconciles that way.
    workflow = {"nodes": [{"id": 1, "type": "ImageCompositeMasked", "inputs": [], "outputs": [],
                           "widgets_values": [64, 32, False]}], "links": [], "version": 0.4}
    inputs = ui_to_api(workflow, OBJECT_INFO)["1"]["inputs"]
    assert inputs == {"x": 64, "y": 32, "resize_source": False}


# ---------------------------------------------------------------- legacy group nodes

EXPECTED_GROUP = {
    "1": ("CheckpointLoaderSimple", {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}),
    "3": ("CLIPTextEncode", {"text": "blurry, text, watermark", "clip": ["1", 1]}),
    # inner node 1 of instance 10; its clip enters through the group's second input
    "10:1": ("CLIPTextEncode", {"text": "a watercolor fox in the snow", "clip": ["1", 1]}),
    # the model passes the group's Reroute 0 (a group input); the negative comes from outside
    "10:2": ("KSampler", {"seed": 1234, "steps": 25, "cfg": 6.5, "sampler_name": "dpmpp_2m", "scheduler": "karras",
                          "denoise": 1, "model": ["1", 0], "positive": ["10:1", 0], "negative": ["3", 0],
                          "latent_image": ["10:3", 0]}),
    # batch_size is hidden on the group node but still one of its widget values
    "10:3": ("EmptyLatentImage", {"width": 768, "height": 512, "batch_size": 2}),
    # the group's only visible output is the KSampler's LATENT
    "5": ("VAEDecode", {"samples": ["10:2", 0], "vae": ["1", 2]}),
    "6": ("SaveImage", {"filename_prefix": "grouped_fox", "images": ["5", 0]}),
}


def _class_and_inputs(prompt: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    return {node_id: (node["class_type"], node["inputs"]) for node_id, node in prompt.items()}


@pytest.mark.parametrize("separator", ["workflow/", "workflow>"])
def test_group_node_expands_into_its_inner_nodes(separator: str) -> None:
    workflow = _load("legacy_group_node_v04.json")
    _node(workflow, 10)["type"] = f"{separator}EncodeAndSample"
    original = copy.deepcopy(workflow)
    assert _class_and_inputs(ui_to_api(workflow, OBJECT_INFO)) == EXPECTED_GROUP
    assert workflow == original  # the caller's document is not modified


def test_group_instance_without_values_keeps_the_definitions_own() -> None:
    workflow = _load("legacy_group_node_v04.json")
    del _node(workflow, 10)["widgets_values"]
    prompt = ui_to_api(workflow, OBJECT_INFO)
    assert prompt["10:1"]["inputs"]["text"] == "a photo of a cat"
    assert prompt["10:3"]["inputs"] | {} == {"width": 512, "height": 512, "batch_size": 1}


def test_muted_group_instance_mutes_every_inner_node() -> None:
    workflow = _load("legacy_group_node_v04.json")
    _node(workflow, 10)["mode"] = 2
    prompt = ui_to_api(workflow, OBJECT_INFO)
    assert not [node_id for node_id in prompt if node_id.startswith("10:")]
    assert "samples" not in prompt["5"]["inputs"]  # its source is not sent, so the link goes too


def test_group_with_a_primitive_and_a_converted_widget() -> None:
    # A PrimitiveNode inside the group drives KSampler's seed, which was converted to an
    # input: the primitive's value (and its control value) are the group's first widgets.
    definition = {
        "nodes": [
            {"type": "PrimitiveNode", "index": 0, "inputs": [],
             "outputs": [{"name": "INT", "type": "INT", "links": [], "widget": {"name": "seed"}}],
             "widgets_values": [5, "fixed"]},
            {"type": "KSampler", "index": 1, "widgets_values": [5, "fixed", 20, 8, "euler", "normal", 1],
             "inputs": [{"name": "model", "type": "MODEL", "link": None},
                        {"name": "positive", "type": "CONDITIONING", "link": None},
                        {"name": "negative", "type": "CONDITIONING", "link": None},
                        {"name": "latent_image", "type": "LATENT", "link": None},
                        {"name": "seed", "type": "INT", "link": None, "widget": {"name": "seed"}}],
             "outputs": [{"name": "LATENT", "type": "LATENT", "links": []}]},
        ],
        "links": [[0, 0, 1, 4, 9, "INT"], [None, 0, 1, 0, 1, "MODEL"], [None, 0, 1, 1, 2, "CONDITIONING"],
                  [None, 0, 1, 2, 3, "CONDITIONING"], [None, 0, 1, 3, 4, "LATENT"]],
        "external": [], "config": {},
    }
    workflow = {
        "version": 0.4, "extra": {"groupNodes": {"Seeded": definition}},
        "nodes": [
            {"id": 1, "type": "CheckpointLoaderSimple", "inputs": [], "widgets_values": ["sd_xl_base_1.0.safetensors"],
             "outputs": [{"name": "MODEL", "type": "MODEL", "links": [1]}]},
            {"id": 2, "type": "CLIPTextEncode", "inputs": [], "widgets_values": ["x"],
             "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [2, 3]}]},
            {"id": 3, "type": "EmptyLatentImage", "inputs": [], "widgets_values": [512, 512, 1],
             "outputs": [{"name": "LATENT", "type": "LATENT", "links": [4]}]},
            {"id": 7, "type": "workflow>Seeded", "widgets_values": [777, "increment", 30, 5.5, "heun", "simple", 0.8],
             "inputs": [{"name": "model", "type": "MODEL", "link": 1},
                        {"name": "positive", "type": "CONDITIONING", "link": 2},
                        {"name": "negative", "type": "CONDITIONING", "link": 3},
                        {"name": "latent_image", "type": "LATENT", "link": 4}],
             "outputs": [{"name": "LATENT", "type": "LATENT", "links": []}]},
        ],
        "links": [[1, 1, 0, 7, 0, "MODEL"], [2, 2, 0, 7, 1, "CONDITIONING"], [3, 2, 0, 7, 2, "CONDITIONING"],
                  [4, 3, 0, 7, 3, "LATENT"]],
    }
    prompt = ui_to_api(workflow, OBJECT_INFO)
    assert "7:0" not in prompt  # the primitive is resolved into the widget it drives
    assert prompt["7:1"]["inputs"] == {"seed": 777, "steps": 30, "cfg": 5.5, "sampler_name": "heun",
                                       "scheduler": "simple", "denoise": 0.8, "model": ["1", 0],
                                       "positive": ["2", 0], "negative": ["2", 0], "latent_image": ["3", 0]}


GROUP_ERRORS = [
    ("definition missing", lambda w: w["extra"]["groupNodes"].clear(),
     r"node 10 \('workflow/EncodeAndSample'\) is a legacy group node whose definition is missing"),
    ("groupNodes not an object", lambda w: w["extra"].__setitem__("groupNodes", [1]),
     r"'extra.groupNodes' must be an object"),
    ("inner node without a type", lambda w: w["extra"]["groupNodes"]["EncodeAndSample"]["nodes"][1].pop("type"),
     r"group node definition 'EncodeAndSample': inner node 1 needs a 'type' string"),
    ("inner link to a missing index", lambda w: w["extra"]["groupNodes"]["EncodeAndSample"]["links"].append(
        [0, 0, 9, 0, 1, "MODEL"]), r"malformed link \[0, 0, 9, 0, 1, \"MODEL\"\]"),
    ("inner link that is a number", lambda w: w["extra"]["groupNodes"]["EncodeAndSample"]["links"].append(5),
     r"group node definition 'EncodeAndSample': malformed link 5"),
    ("link into a group input that does not exist", lambda w: w["links"].append([16, 1, 0, 10, 7, "MODEL"]),
     r"enters input 7 of group node 10 .* which has 3 inputs"),
    ("link from a group output that does not exist", lambda w: w["links"].append([17, 10, 4, 5, 0, "LATENT"]),
     r"leaves output 4 of group node 10 .* which has 1 outputs"),
    ("inner inputs not a list", lambda w: w["extra"]["groupNodes"]["EncodeAndSample"]["nodes"][2].__setitem__(
        "inputs", 5), r"inner node 2 \('KSampler'\): 'inputs' must be a list of slot objects, got number 5"),
    ("instance inputs not a list", lambda w: _node(w, 10).__setitem__("inputs", 3),
     r"node 10 \('workflow/EncodeAndSample'\): 'inputs' must be a list of slot objects, got number 3"),
]


@pytest.mark.parametrize(("case", "change", "message"), GROUP_ERRORS, ids=[case[0] for case in GROUP_ERRORS])
def test_malformed_group_nodes_raise_conversion_errors(case: str, change: Any, message: str) -> None:
    workflow = _load("legacy_group_node_v04.json")
    change(workflow)
    with pytest.raises(ConversionError, match=message):
        ui_to_api(workflow, OBJECT_INFO)


def test_group_with_an_unknown_inner_type_names_it_as_a_core_node() -> None:
    workflow = _load("legacy_group_node_v04.json")
    definition = workflow["extra"]["groupNodes"]["EncodeAndSample"]
    definition["nodes"][2]["type"] = "DualCFGGuider"
    definition["nodes"][3]["type"] = "ACME_NoiseMixer"
    with pytest.raises(ConversionError) as raised:
        ui_to_api(workflow, OBJECT_INFO)
    message = str(raised.value)
    assert "legacy group node 'EncodeAndSample' cannot be expanded" in message
    assert "'DualCFGGuider' is a ComfyUI core node Flowmill does not have yet" in message
    assert "'ACME_NoiseMixer' is not a ComfyUI core node: the custom node pack" in message


# ---------------------------------------------------------------- unknown node types


def test_conversion_errors_also_name_every_unknown_node_type() -> None:
    workflow = _load("legacy_seed_toggle_v04.json")
    _node(workflow, 3)["widgets_values"] = [1, "sometimes", 20, 8, "euler", "normal", 1]
    _node(workflow, 7)["type"] = "VHS_VideoCombine"
    _node(workflow, 5)["type"] = "SamplerCustomAdvanced"
    with pytest.raises(ConversionError) as raised:
        ui_to_api(workflow, OBJECT_INFO)
    message = str(raised.value)
    assert "node 3 ('KSampler')" in message
    assert "'SamplerCustomAdvanced' is a ComfyUI core node Flowmill does not have yet" in message
    assert "'VHS_VideoCombine' is not a ComfyUI core node" in message


def test_unknown_node_types_looks_into_subgraphs_and_groups_and_skips_virtual_nodes() -> None:
    workflow = _load("legacy_group_node_v04.json")
    workflow["nodes"].append({"id": 40, "type": "Note", "widgets_values": ["hi"]})
    workflow["nodes"].append({"id": 41, "type": "Reroute"})
    workflow["extra"]["groupNodes"]["EncodeAndSample"]["nodes"][1]["type"] = "CLIPTextEncodeSDXL"
    workflow["definitions"] = {"subgraphs": [{"id": "abc", "nodes": [{"id": 1, "type": "FluxGuidance"}]}]}
    workflow["nodes"].append({"id": 42, "type": "abc"})
    assert unknown_node_types(workflow, OBJECT_INFO) == ["CLIPTextEncodeSDXL", "FluxGuidance"]
    assert unknown_node_types({"nodes": 5, "extra": [1], "definitions": "x"}, OBJECT_INFO) == []


def test_core_node_list_is_an_immutable_set_of_comfyui_names() -> None:
    assert isinstance(COMFYUI_CORE_NODE_TYPES, frozenset) and len(COMFYUI_CORE_NODE_TYPES) > 500
    for name in ("KSampler", "SaveImage", "SamplerCustomAdvanced", "DualCFGGuider", "SaveAnimatedWEBP",
                 "InstructPixToPixConditioning", "ImageCompositeMasked", "PrimitiveInt"):
        assert is_comfyui_core_node(name), name
    for name in ("VHS_VideoCombine", "IPAdapterAdvanced", "PrimitiveNode", "workflow>IP2PSampler"):
        assert not is_comfyui_core_node(name), name
    assert describe_missing_type("KSampler") == "'KSampler' is a ComfyUI core node Flowmill does not have yet"
