"""UI (LiteGraph) workflow → API prompt conversion (engine/convert.py).

The fixtures in tests/fixtures/ui_workflows/ are hand-made files shaped like those the
ComfyUI frontend saves; each is checked against the exact prompt the browser would queue.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.convert import ConversionError, is_api_prompt, is_ui_workflow, load_workflow, ui_to_api

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ui_workflows"


def _load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


OBJECT_INFO = _load("object_info.json")


def _node(workflow: dict[str, Any], node_id: int) -> dict[str, Any]:
    return next(node for node in workflow["nodes"] if node["id"] == node_id)


def _api(class_type: str, title: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs, "_meta": {"title": title}}


# ---------------------------------------------------------------- whole fixtures

EXPECTED_V04 = {
    "1": _api("CheckpointLoaderSimple", "Load Checkpoint", ckpt_name="sd_xl_base_1.0.safetensors"),
    "2": _api("CLIPTextEncode", "Positive Prompt",
              text="a watercolor painting of a lighthouse at dusk", clip=["1", 1]),
    # clip arrives through Reroute 20
    "3": _api("CLIPTextEncode", "Negative Prompt", text="blurry, low quality", clip=["1", 1]),
    # width is a converted widget fed by PrimitiveNode 30: its literal replaces the stale 512
    "4": _api("EmptyLatentImage", "Empty Latent Image", width=768, height=1024, batch_size=1),
    # the seed widget is linked to the backend PrimitiveInt; "randomize" is never sent
    "5": _api("KSampler", "KSampler", seed=["31", 0], steps=25, cfg=6.5, sampler_name="dpmpp_2m",
              scheduler="karras", denoise=1, model=["1", 0], positive=["2", 0], negative=["3", 0],
              latent_image=["4", 0]),
    # vae arrives through the Reroute chain 21 -> 22
    "6": _api("VAEDecode", "VAE Decode", samples=["5", 0], vae=["1", 2]),
    # two bypassed ImageInvert nodes (7, 8) sit between VAEDecode and this node
    "9": _api("SaveImage", "Save Image", filename_prefix="lighthouse", images=["6", 0]),
    # the trailing "image" is the upload button's value
    "10": _api("LoadImage", "Load Image", image="example.png"),
    "11": _api("ImageScale", "Upscale Image", upscale_method="lanczos", width=768, height=768,
               crop="center", image=["10", 0]),
    "12": _api("ImageBlend", "Image Blend", blend_factor=0.35, blend_mode="multiply",
               image1=["6", 0], image2=["11", 0]),
    # its only source (ImageInvert 13) is muted: the required input is left missing
    "14": _api("SaveImage", "Save Image", filename_prefix="inverted_blend"),
    # the optional mask came from the muted InvertMask 16, so it simply disappears
    "15": _api("ImageCompositeMasked", "ImageCompositeMasked", x=64, y=32, resize_source=False,
               destination=["12", 0], source=["11", 0]),
    "17": _api("SaveImage", "Save Composite", filename_prefix="composite", images=["15", 0]),
    "31": _api("PrimitiveInt", "Int", value=42),
}

EXPECTED_V1 = {
    "1": _api("CheckpointLoaderSimple", "Load Checkpoint", ckpt_name="v1-5-pruned-emaonly.safetensors"),
    "2": _api("CLIPTextEncode", "CLIP Text Encode (Prompt)", text="a castle on a hill, oil painting",
              clip=["1", 1]),
    "3": _api("CLIPTextEncode", "Negative", text="text, watermark", clip=["1", 1]),
    # newer frontends no longer save the upload button's value
    "4": _api("LoadImage", "Load Image", image="castle.png"),
    "5": _api("ImageScale", "Upscale Image", upscale_method="bicubic", width=768, height=512,
              crop="disabled", image=["4", 0]),
    # pixels pass through bypassed ImageInvert 6 and bypassed ImageBlend 17 (its image1)
    "7": _api("VAEEncode", "VAE Encode", pixels=["5", 0], vae=["1", 2]),
    # model runs through two native reroutes (link parentId), which are visual only
    "8": _api("KSampler", "KSampler", model=["1", 0], seed=8675309, steps=30, cfg=7,
              sampler_name="euler_ancestral", scheduler="normal", positive=["2", 0], negative=["3", 0],
              latent_image=["7", 0], denoise=0.6),
    "9": _api("VAEDecode", "VAE Decode", samples=["8", 0], vae=["1", 2]),
    # widgets_values saved as a record
    "10": _api("ImageBlend", "Image Blend", image1=["9", 0], image2=["5", 0], blend_factor=0.25,
               blend_mode="screen"),
    "11": _api("SaveImage", "Save Image", images=["10", 0], filename_prefix="castle_img2img"),
    "12": _api("ImageScale", "Upscale Image", upscale_method="nearest-exact", width=768, height=1024,
               crop="disabled", image=["9", 0]),
    "14": _api("SaveImage", "Composite", images=["16", 0], filename_prefix="castle_composite"),
    "16": _api("ImageCompositeMasked", "ImageCompositeMasked", destination=["12", 0], source=["9", 0],
               x=0, y=0, resize_source=True),
}

EXPECTED_SUBGRAPH = {
    "2": _api("LoadImage", "Load Image", image="castle.png"),
    "5:1": _api("ImageInvert", "Invert Image", image=["2", 0]),
    # width comes from the instance's promoted widget (640), not the inner 512
    "5:2": _api("ImageScale", "Upscale Image", upscale_method="bilinear", width=640, height=384,
                crop="disabled", image=["5:1", 0]),
    "6": _api("SaveImage", "Save Image", images=["5:2", 0], filename_prefix="subgraph"),
}


@pytest.mark.parametrize(
    ("name", "expected"),
    [("txt2img_v04.json", EXPECTED_V04), ("img2img_v1.json", EXPECTED_V1), ("subgraph_v04.json", EXPECTED_SUBGRAPH)],
)
def test_fixture_converts_to_the_exact_prompt(name: str, expected: dict[str, Any]) -> None:
    assert ui_to_api(_load(name), OBJECT_INFO) == expected


@pytest.mark.parametrize("name", ["txt2img_v04.json", "img2img_v1.json", "subgraph_v04.json"])
def test_conversion_leaves_its_input_untouched(name: str) -> None:
    workflow = _load(name)
    before = copy.deepcopy(workflow)
    prompt = ui_to_api(workflow, OBJECT_INFO)
    assert workflow == before
    assert load_workflow(workflow, OBJECT_INFO) == prompt


# ---------------------------------------------------------------- detection and API prompts


def test_detection_tells_the_formats_apart() -> None:
    for name in ("txt2img_v04.json", "img2img_v1.json", "subgraph_v04.json"):
        assert is_ui_workflow(_load(name)) and not is_api_prompt(_load(name))
    assert is_api_prompt(EXPECTED_V04) and not is_ui_workflow(EXPECTED_V04)
    assert is_api_prompt({})
    assert not is_ui_workflow([]) and not is_api_prompt([]) and not is_api_prompt({"1": {"inputs": {}}})


def test_api_prompt_is_returned_with_string_ids() -> None:
    prompt = {
        3: {"class_type": "VAEDecode", "inputs": {"samples": [4, 0], "vae": ["1", 2]}, "_meta": {"title": "d"}},
        "4": {"class_type": "Thing", "inputs": {"text": "hi", "sizes": {"__value__": [1, 2]}, "flag": [True, 0]}},
        "5": {"class_type": "NoInputs"},
    }
    assert load_workflow(prompt, OBJECT_INFO) == {
        "3": {"class_type": "VAEDecode", "inputs": {"samples": ["4", 0], "vae": ["1", 2]}, "_meta": {"title": "d"}},
        "4": {"class_type": "Thing", "inputs": {"text": "hi", "sizes": {"__value__": [1, 2]}, "flag": [True, 0]}},
        "5": {"class_type": "NoInputs", "inputs": {}},
    }


def test_load_workflow_rejects_other_data() -> None:
    with pytest.raises(ConversionError, match="neither"):
        load_workflow({"1": {"type": "KSampler"}}, OBJECT_INFO)


# ---------------------------------------------------------------- widget values


def _single(node_type: str, values: Any, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Convert a one-node v0.4 workflow and return that node's API inputs."""
    workflow = {"last_node_id": 1, "last_link_id": 0, "links": [], "version": 0.4, "nodes": [
        {"id": 1, "type": node_type, "pos": [0, 0], "size": [200, 100], "flags": {}, "order": 0, "mode": 0,
         "inputs": [], "outputs": [], "properties": {"Node name for S&R": node_type},
         "widgets_values": values}]}
    return ui_to_api(workflow, info or OBJECT_INFO)["1"]["inputs"]


@pytest.mark.parametrize("values", [["example.png"], ["example.png", "image"]])
def test_load_image_with_or_without_the_upload_value(values: list[Any]) -> None:
    assert _single("LoadImage", values) == {"image": "example.png"}


def test_seed_without_its_control_value_still_lines_up() -> None:
    values = [7, 20, 8.0, "euler", "normal", 1.0]
    assert _single("KSampler", values) == {
        "seed": 7, "steps": 20, "cfg": 8.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}


def test_control_value_is_skipped_even_when_the_schema_does_not_flag_it() -> None:
    info = copy.deepcopy(OBJECT_INFO)
    del info["KSampler"]["input"]["required"]["seed"][1]["control_after_generate"]
    values = [7, "increment", 20, 8.0, "euler", "normal", 1.0]
    assert _single("KSampler", values, info=info)["steps"] == 20


def test_flagged_combo_carries_control_and_filter_values() -> None:
    info = {"Pick": {"input": {"required": {
        "choice": [["a", "b"], {"control_after_generate": True}], "count": ["INT", {"default": 1}]}},
        "input_order": {"required": ["choice", "count"]}, "output": []}}
    assert _single("Pick", ["b", "randomize", "", 3], info=info) == {"choice": "b", "count": 3}
    assert _single("Pick", ["b", 3], info=info) == {"choice": "b", "count": 3}


def test_widgets_follow_input_order_required_then_optional() -> None:
    info = {"Mixed": {
        "input": {"optional": {"late": ["FLOAT", {}]},
                  "required": {"b": ["STRING", {}], "image": ["IMAGE"], "a": ["BOOLEAN", {}],
                               "forced": ["INT", {"forceInput": True}], "mode": ["COMBO", {"options": ["x", "y"]}]}},
        "input_order": {"required": ["a", "image", "forced", "b", "mode"], "optional": ["late"]},
        "output": []}}
    assert _single("Mixed", [True, "text", "y", 0.5], info=info) == {"a": True, "b": "text", "mode": "y", "late": 0.5}


def test_missing_trailing_widgets_take_the_schema_default() -> None:
    # A file older than the node's newest widget: the frontend shows the default.
    assert _single("ImageScale", ["area", 64]) == {"upscale_method": "area", "width": 64, "height": 512,
                                                    "crop": "disabled"}


def test_list_values_are_boxed_so_they_do_not_read_as_links() -> None:
    info = {"Lists": {"input": {"required": {"items": ["STRING", {}]}}, "output": []}}
    assert _single("Lists", {"items": ["a", "b"], "junk": 1}, info=info) == {"items": {"__value__": ["a", "b"]}}


def test_unknown_node_type_is_kept_for_validation_to_report() -> None:
    workflow = _load("txt2img_v04.json")
    _node(workflow, 12)["type"] = "FancyBlend"
    _node(workflow, 4)["type"] = "LatentFromNowhere"
    _node(workflow, 4)["widgets_values"] = {"width": 640, "mode": "wide"}
    prompt = ui_to_api(workflow, OBJECT_INFO)
    # positional widget values cannot be named without a schema; links still resolve
    assert prompt["12"] == _api("FancyBlend", "FancyBlend", image1=["6", 0], image2=["11", 0])
    assert prompt["4"] == _api("LatentFromNowhere", "LatentFromNowhere", width=768, mode="wide")


def test_frontend_only_type_is_real_when_the_server_defines_it() -> None:
    info = {**OBJECT_INFO, "Note": {"input": {"required": {"text": ["STRING", {}]}}, "output": [],
                                    "display_name": "Server Note"}}
    assert ui_to_api(_load("txt2img_v04.json"), info)["40"]["class_type"] == "Note"


# ---------------------------------------------------------------- bypass, mute, primitives


def _graph(nodes: list[tuple[int, str, int, list[tuple[str, str]], list[str]]],
           links: list[tuple[int, int, int, int]]) -> dict[str, Any]:
    """A v1 workflow from (id, type, mode, [(input, type)], [output types]) and
    (origin, origin_slot, target, target_slot) links."""
    built = {node_id: {"id": node_id, "type": kind, "pos": [0, 0], "size": [200, 80], "flags": {}, "order": 0,
                       "mode": mode, "properties": {"Node name for S&R": kind}, "widgets_values": [],
                       "inputs": [{"name": name, "type": wire, "link": None} for name, wire in inputs],
                       "outputs": [{"name": wire, "type": wire, "links": []} for wire in outputs]}
             for node_id, kind, mode, inputs, outputs in nodes}
    link_objects = []
    for link_id, (origin, origin_slot, target, target_slot) in enumerate(links, start=1):
        built[target]["inputs"][target_slot]["link"] = link_id
        built[origin]["outputs"][origin_slot]["links"].append(link_id)
        link_objects.append({"id": link_id, "origin_id": origin, "origin_slot": origin_slot, "target_id": target,
                             "target_slot": target_slot, "type": built[origin]["outputs"][origin_slot]["type"]})
    return {"version": 1, "state": {"lastNodeId": max(built), "lastLinkId": len(links)},
            "nodes": list(built.values()), "links": link_objects}


BYPASS_INFO = {
    **OBJECT_INFO,
    "Pair": {"input": {"required": {"a": ["IMAGE"], "b": ["IMAGE"]}}, "output": ["IMAGE", "IMAGE"]},
    "Route": {"input": {"required": {"x": ["IMAGE,MASK"], "y": ["LATENT"], "z": ["IMAGE"]}},
              "output": ["LATENT", "IMAGE"]},
}
SAVE = ("SaveImage", 0, [("images", "IMAGE")], [])


def test_bypass_prefers_the_input_at_the_same_index_then_an_exact_type() -> None:
    workflow = _graph(
        [(1, "LoadImage", 0, [], ["IMAGE", "MASK"]), (2, "LoadImage", 0, [], ["IMAGE", "MASK"]),
         (3, "Pair", 4, [("a", "IMAGE"), ("b", "IMAGE")], ["IMAGE", "IMAGE"]), (4, *SAVE), (5, *SAVE),
         (6, "Route", 4, [("x", "IMAGE,MASK"), ("y", "LATENT"), ("z", "IMAGE")], ["LATENT", "IMAGE"]), (7, *SAVE)],
        [(1, 0, 3, 0), (2, 0, 3, 1), (3, 1, 4, 0), (3, 0, 5, 0), (1, 1, 6, 0), (2, 0, 6, 2), (6, 1, 7, 0)],
    )
    prompt = ui_to_api(workflow, BYPASS_INFO)
    assert prompt["4"]["inputs"]["images"] == ["2", 0]  # output 1 -> input b, not the first IMAGE input
    assert prompt["5"]["inputs"]["images"] == ["1", 0]
    assert prompt["7"]["inputs"]["images"] == ["2", 0]  # exact IMAGE (z) beats the union x


def test_bypass_chain_through_reroutes() -> None:
    workflow = _graph(
        [(1, "LoadImage", 0, [], ["IMAGE", "MASK"]), (2, "Reroute", 0, [("", "*")], ["IMAGE"]),
         (3, "ImageInvert", 4, [("image", "IMAGE")], ["IMAGE"]), (4, "Reroute", 2, [("", "*")], ["IMAGE"]),
         (5, "ImageInvert", 4, [("image", "IMAGE")], ["IMAGE"]), (6, *SAVE)],
        [(1, 0, 2, 0), (2, 0, 3, 0), (3, 0, 4, 0), (4, 0, 5, 0), (5, 0, 6, 0)],
    )
    # a muted Reroute still passes its link through, as in the frontend; empty widgets_values
    # mean every widget shows its default (the first choice for a combo)
    assert ui_to_api(workflow, OBJECT_INFO) == {
        "1": _api("LoadImage", "Load Image", image="castle.png"),
        "6": _api("SaveImage", "Save Image", images=["1", 0], filename_prefix="ComfyUI"),
    }


def test_bypass_without_a_matching_input_drops_the_link() -> None:
    workflow = _load("txt2img_v04.json")
    _node(workflow, 7)["inputs"][0]["type"] = "MASK"
    assert "images" not in ui_to_api(workflow, OBJECT_INFO)["9"]["inputs"]


def test_bypassed_source_with_nothing_behind_it_keeps_the_widget_value() -> None:
    workflow = _load("txt2img_v04.json")
    primitive = _node(workflow, 31)
    primitive["mode"] = 4
    primitive["inputs"] = [{"name": "value", "type": "INT", "widget": {"name": "value"}, "link": None}]
    assert ui_to_api(workflow, OBJECT_INFO)["5"]["inputs"]["seed"] == 156680208700286


def test_muted_source_removes_a_converted_widget_input() -> None:
    workflow = _load("txt2img_v04.json")
    _node(workflow, 31)["mode"] = 2
    prompt = ui_to_api(workflow, OBJECT_INFO)
    assert "31" not in prompt and "seed" not in prompt["5"]["inputs"]


def test_primitive_node_literal_lists_are_boxed() -> None:
    workflow = _load("txt2img_v04.json")
    _node(workflow, 30)["widgets_values"] = [[1, 2], "fixed"]
    assert ui_to_api(workflow, OBJECT_INFO)["4"]["inputs"]["width"] == {"__value__": [1, 2]}


# ---------------------------------------------------------------- subgraphs


def test_muted_subgraph_instance_removes_its_inner_nodes() -> None:
    workflow = _load("subgraph_v04.json")
    _node(workflow, 5)["mode"] = 2
    assert ui_to_api(workflow, OBJECT_INFO) == {
        "2": EXPECTED_SUBGRAPH["2"], "6": _api("SaveImage", "Save Image", filename_prefix="subgraph")}


def test_bypassed_subgraph_instance_passes_its_input_through() -> None:
    workflow = _load("subgraph_v04.json")
    _node(workflow, 5)["mode"] = 4
    prompt = ui_to_api(workflow, OBJECT_INFO)
    assert set(prompt) == {"2", "6"} and prompt["6"]["inputs"]["images"] == ["2", 0]


def test_subgraph_input_without_a_widget_value_keeps_the_inner_value() -> None:
    workflow = _load("subgraph_v04.json")
    del _node(workflow, 5)["widgets_values"]
    assert ui_to_api(workflow, OBJECT_INFO)["5:2"]["inputs"]["width"] == 512


def test_subgraph_output_wired_straight_to_an_input() -> None:
    workflow = _load("subgraph_v04.json")
    definition = workflow["definitions"]["subgraphs"][0]
    definition["links"][3] = {"id": 4, "origin_id": -10, "origin_slot": 0, "target_id": -20, "target_slot": 0,
                              "type": "IMAGE"}
    assert ui_to_api(workflow, OBJECT_INFO)["6"]["inputs"]["images"] == ["2", 0]


def test_nested_subgraph_instances_get_path_ids() -> None:
    workflow = _load("subgraph_v04.json")
    inner = workflow["definitions"]["subgraphs"][0]
    outer = copy.deepcopy(inner)
    outer.update(id="b0b0b0b0-1111-4222-8333-444455556666", name="Wrapper")
    instance = copy.deepcopy(_node(workflow, 5))
    instance.update(id=3, inputs=[{"name": "image", "type": "IMAGE", "link": 1},
                                  {"name": "width", "type": "INT", "widget": {"name": "width"}, "link": 3}])
    outer["nodes"] = [instance]
    outer["links"] = [
        {"id": 1, "origin_id": -10, "origin_slot": 0, "target_id": 3, "target_slot": 0, "type": "IMAGE"},
        {"id": 3, "origin_id": -10, "origin_slot": 1, "target_id": 3, "target_slot": 1, "type": "INT"},
        {"id": 4, "origin_id": 3, "origin_slot": 0, "target_id": -20, "target_slot": 0, "type": "IMAGE"},
    ]
    workflow["definitions"]["subgraphs"].append(outer)
    _node(workflow, 5)["type"] = outer["id"]
    _node(workflow, 5)["widgets_values"] = [320]
    prompt = ui_to_api(workflow, OBJECT_INFO)
    assert set(prompt) == {"2", "5:3:1", "5:3:2", "6"}
    assert prompt["5:3:2"]["inputs"]["width"] == 320
    assert prompt["5:3:1"]["inputs"]["image"] == ["2", 0] and prompt["6"]["inputs"]["images"] == ["5:3:2", 0]


# ---------------------------------------------------------------- errors


def _broken(change: Any, name: str = "txt2img_v04.json") -> dict[str, Any]:
    workflow = _load(name)
    change(workflow)
    return workflow


def _set_link(workflow: dict[str, Any], node_id: int, slot: int, link_id: int) -> None:
    _node(workflow, node_id)["inputs"][slot]["link"] = link_id


ERROR_CASES = [
    ("unknown link id", lambda w: _set_link(w, 9, 0, 99), r"node 9 \('SaveImage'\) input 'images': link 99 is not"),
    ("link from a missing node", lambda w: w["links"].__setitem__(15, [16, 77, 0, 9, 0, "IMAGE"]),
     r"node 9 .*comes from node 77, which does not exist"),
    # Trailing extra values are ignored, as the frontend ignores them, unless the columns are
    # shifted: then the error names the value that does not fit, not the last one.
    ("shifted widget values", lambda w: _node(w, 12).__setitem__("widgets_values", ["multiply", 0.35, "extra"]),
     r"node 12 \('ImageBlend'\): its 3 widget values do not line up .*\"multiply\" cannot be the value of "
     r"'blend_factor' \(FLOAT\)"),
    ("widgets_values of the wrong type", lambda w: _node(w, 12).__setitem__("widgets_values", "0.35"),
     r"node 12 .*must be a list or an object"),
    ("legacy group node", lambda w: _node(w, 12).__setitem__("type", "workflow>Blender"),
     r"node 12 \('workflow>Blender'\) is a legacy group node whose definition is missing from extra.groupNodes"),
    ("node without a type", lambda w: _node(w, 12).pop("type"), r'malformed node .*"id": 12'),
    ("duplicate node id", lambda w: _node(w, 13).__setitem__("id", 12), r"node 12 \('ImageInvert'\) appears twice"),
    ("malformed link", lambda w: w["links"].append([29, 1]), r"malformed link \[29, 1\]"),
    ("reroute loop", lambda w: (_set_link(w, 21, 0, 30), w["links"].append([30, 22, 0, 21, 0, "VAE"])),
     r"loop"),
    ("subgraph input outside a subgraph", lambda w: w["links"].__setitem__(15, [16, -10, 0, 9, 0, "IMAGE"]),
     r"node 9 .*starts at a subgraph input outside a subgraph"),
    ("nodes missing", lambda w: w.__setitem__("nodes", {"1": {}}), r"needs a 'nodes' list"),
    ("malformed input entry", lambda w: _node(w, 9)["inputs"].append("images"),
     r"node 9 \('SaveImage'\): input slot 1 must be an object, got string \"images\""),
    ("non-numeric slot", lambda w: w["links"].__setitem__(15, [16, 8, "first", 9, 0, "IMAGE"]), r"malformed link"),
]


@pytest.mark.parametrize(("case", "change", "message"), ERROR_CASES, ids=[case[0] for case in ERROR_CASES])
def test_malformed_workflows_raise_conversion_errors(case: str, change: Any, message: str) -> None:
    with pytest.raises(ConversionError, match=message):
        ui_to_api(_broken(change), OBJECT_INFO)


def test_self_containing_subgraph_is_rejected() -> None:
    def nest(workflow: dict[str, Any]) -> None:
        definition = workflow["definitions"]["subgraphs"][0]
        definition["nodes"].append({**_node(workflow, 5), "id": 9, "inputs": [], "outputs": []})

    with pytest.raises(ConversionError, match=r"node 5:9: subgraph .* contains itself"):
        ui_to_api(_broken(nest, "subgraph_v04.json"), OBJECT_INFO)


def test_subgraph_definition_needs_an_id() -> None:
    workflow = _broken(lambda w: w["definitions"]["subgraphs"][0].pop("id"), "subgraph_v04.json")
    with pytest.raises(ConversionError, match="subgraph definition has no 'id'"):
        ui_to_api(workflow, OBJECT_INFO)


def test_subgraph_output_from_a_missing_inner_node() -> None:
    def break_output(workflow: dict[str, Any]) -> None:
        workflow["definitions"]["subgraphs"][0]["links"][3]["origin_id"] = 42

    with pytest.raises(ConversionError, match=r"node 5: its subgraph output comes from missing node 42"):
        ui_to_api(_broken(break_output, "subgraph_v04.json"), OBJECT_INFO)


def test_absurdly_deep_reroute_chain_is_refused_not_crashed() -> None:
    count = 3000
    nodes = [(1, "LoadImage", 0, [], ["IMAGE", "MASK"])]
    nodes += [(i, "Reroute", 0, [("", "*")], ["IMAGE"]) for i in range(2, count)] + [(count, *SAVE)]
    workflow = _graph(nodes, [(i, 0, i + 1, 0) for i in range(1, count)])
    with pytest.raises(ConversionError, match="too deeply"):
        ui_to_api(workflow, OBJECT_INFO)


def test_api_prompt_with_malformed_inputs() -> None:
    with pytest.raises(ConversionError, match=r"node 1 \('KSampler'\): 'inputs' must be an object"):
        load_workflow({"1": {"class_type": "KSampler", "inputs": [1, 2]}}, OBJECT_INFO)


def test_conversion_error_is_a_value_error() -> None:
    assert issubclass(ConversionError, ValueError)


# ---------------------------------------------------------------- property: random linear chains

STEP = st.tuples(st.sampled_from(["ImageInvert", "Reroute"]), st.sampled_from([0, 0, 2, 4]))


def _chain_workflow(steps: list[tuple[str, int]], ids: list[int], v1: bool) -> dict[str, Any]:
    """LoadImage -> steps... -> SaveImage, saved in either schema version."""
    kinds = [("LoadImage", 0)] + steps + [("SaveImage", 0)]
    nodes, links = [], []
    for position, ((kind, mode), node_id) in enumerate(zip(kinds, ids, strict=True)):
        link_in = position if position else None  # link k joins node k-1 to node k
        node = {"id": node_id, "type": kind, "pos": [position * 250, 100], "size": [210, 60], "flags": {},
                "order": position, "mode": mode, "properties": {"Node name for S&R": kind},
                "inputs": [] if kind == "LoadImage" else [{"name": "images" if kind == "SaveImage" else "image",
                                                           "type": "*" if kind == "Reroute" else "IMAGE",
                                                           "link": link_in}],
                "outputs": [] if kind == "SaveImage" else [{"name": "IMAGE", "type": "IMAGE",
                                                            "links": [position + 1], "slot_index": 0}]}
        node["widgets_values"] = {"LoadImage": ["example.png", "image"], "SaveImage": ["chain"]}.get(kind, [])
        nodes.append(node)
        if position:
            origin, target = ids[position - 1], node_id
            links.append({"id": position, "origin_id": origin, "origin_slot": 0, "target_id": target,
                          "target_slot": 0, "type": "IMAGE"} if v1 else [position, origin, 0, target, 0, "IMAGE"])
    header = {"version": 1, "state": {"lastNodeId": max(ids), "lastLinkId": len(links)}} if v1 else {
        "version": 0.4, "last_node_id": max(ids), "last_link_id": len(links)}
    return {**header, "nodes": nodes, "links": links, "groups": [], "config": {}, "extra": {}}


def _expected_source(steps: list[tuple[str, int]], ids: list[int]) -> list[Any] | None:
    for position in range(len(steps), 0, -1):
        kind, mode = steps[position - 1]
        if kind == "Reroute" or mode == 4:
            continue
        return None if mode == 2 else [str(ids[position]), 0]
    return [str(ids[0]), 0]


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(STEP, max_size=8), data=st.data(), v1=st.booleans())
def test_random_linear_chains_only_link_existing_nodes(steps: list[tuple[str, int]], data: Any, v1: bool) -> None:
    ids = data.draw(st.lists(st.integers(1, 500), min_size=len(steps) + 2, max_size=len(steps) + 2, unique=True))
    prompt = ui_to_api(_chain_workflow(steps, ids, v1), OBJECT_INFO)
    for node in prompt.values():
        for value in node["inputs"].values():
            if isinstance(value, list):
                assert value[0] in prompt and value[1] == 0
    assert prompt[str(ids[-1])]["inputs"].get("images") == _expected_source(steps, ids)
