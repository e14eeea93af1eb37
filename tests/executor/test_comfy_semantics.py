"""ComfyUI execution semantics Flowmill once differed on, run through validation and the executor.

- A link into an input a `**kwargs` V1 node does not declare is passed to it, and its source
  runs (ComfyUI's `test_undeclared_inputs`, whose 255 // 4 grey also needs truncation).
- An input declared both required and optional is accepted; the required entry wins.
- SaveImage and PreviewImage quantise like ComfyUI: `clip(255 * x, 0, 255)` cast to uint8.

The V1 classes are hand-written fixtures: tests/fixtures/custom_nodes/sample_pack/parity.py.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from PIL.PngImagePlugin import PngInfo

from engine.comfy_packs import load_custom_nodes
from engine.context import NodeContext
from engine.media import quantize_8bit
from engine.paths import Folders
from engine.registry import NodeRegistry
from nodes.image.preview_image import preview_image
from nodes.image.save_image import save_image
from tests.fixtures.pipeline import Pipeline
from tests.fixtures.stub_nodes import stub_registry

PACKS = Path(__file__).resolve().parents[1] / "fixtures" / "custom_nodes"
_PACK_ROOTS = ("custom_nodes", "comfy", "comfy_execution", "comfy_api")


@pytest.fixture
def parity_registry() -> Iterator[NodeRegistry]:
    """Built-in nodes, stub nodes and the sample V1 pack; the pack's imports are undone afterwards."""
    saved_path, saved_modules = list(sys.path), set(sys.modules)
    registry = NodeRegistry()
    registry.discover("nodes")
    for spec in stub_registry():
        registry.register(spec)
    assert load_custom_nodes(registry, PACKS, allow={"sample_pack"}) == ["sample_pack"]
    yield registry
    sys.path[:] = saved_path
    for name in [name for name in sys.modules if name not in saved_modules and name.split(".")[0] in _PACK_ROOTS]:
        del sys.modules[name]


def _image(color: int) -> dict:
    return {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color}}


def _saved_pixels(folders: Folders, ui: dict) -> np.ndarray:
    (entry,) = ui["images"]
    with PILImage.open(folders.root_for_type(entry["type"]) / entry["subfolder"] / entry["filename"]) as saved:
        return np.asarray(saved)


# --- undeclared linked inputs -------------------------------------------------------------------


def test_links_into_undeclared_inputs_reach_a_kwargs_node(parity_registry: NodeRegistry, folders: Folders) -> None:
    prompt = {"1": _image(0x000000), "2": _image(0xFFFFFF), "3": _image(0x000000), "4": _image(0x000000),
              "5": {"class_type": "SampleVariadicAverage",
                    "inputs": {"input1": ["1", 0], "input2": ["2", 0], "input3": ["3", 0], "input4": ["4", 0]}},
              "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "average"}}}
    pipeline = Pipeline(parity_registry, folders)
    checked = pipeline.validate(prompt)
    assert checked.ok and checked.prompt["5"]["inputs"]["input4"] == ["4", 0]
    outcome = pipeline.run(prompt)
    # The white source runs only as a dependency of an undeclared input (the three identical black
    # ones share one result within the run).
    assert {"2", "5", "6"} <= set(outcome.ran) and {"1", "3", "4"} & set(outcome.ran)
    pixels = _saved_pixels(folders, outcome.result.outputs["6"])
    # ComfyUI's expectation: (0 + 1 + 0 + 0) / 4 of 255 is 63.75, saved as 255 // 4. With an
    # input missing it would be 85 or 127; with rounding, 64.
    assert pixels.min() == pixels.max() == 255 // 4


def test_an_undeclared_link_must_point_at_a_real_output(parity_registry: NodeRegistry, folders: Folders) -> None:
    prompt = {"1": _image(0), "5": {"class_type": "SampleVariadicAverage",
                                    "inputs": {"input1": ["1", 0], "input2": ["9", 0], "input3": ["1", 4]}},
              "6": {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}}}
    checked = Pipeline(parity_registry, folders).validate(prompt)
    errors = {error["extra_info"]["input_name"]: error["type"] for error in checked.node_errors["5"]["errors"]}
    assert errors == {"input2": "bad_linked_input", "input3": "bad_linked_input"}


def test_a_node_without_kwargs_is_not_given_undeclared_links(parity_registry: NodeRegistry, folders: Folders) -> None:
    prompt = {"1": _image(0), "2": _image(0xFFFFFF),
              "3": {"class_type": "SampleFixedArity", "inputs": {"image": ["1", 0], "extra": ["2", 0], "junk": 5}},
              "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}}}
    outcome = Pipeline(parity_registry, folders).run(prompt)
    assert "2" not in outcome.ran  # it could not be passed, so it is not run either
    assert {"1", "3", "4"} <= set(outcome.ran)


def test_undeclared_constants_are_dropped_as_in_comfyui(parity_registry: NodeRegistry, folders: Folders) -> None:
    prompt = {"1": _image(0x808080), "5": {"class_type": "SampleVariadicAverage",
                                           "inputs": {"input1": ["1", 0], "input2": "not a link"}},
              "6": {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}}}
    pipeline = Pipeline(parity_registry, folders)
    assert "input2" not in pipeline.validate(prompt).prompt["5"]["inputs"]
    outcome = pipeline.run(prompt)  # a string passed as input2 would have failed torch.stack
    assert _saved_pixels(folders, outcome.result.outputs["6"]).max() == 0x80


# --- required and optional -------------------------------------------------------------------------


def test_an_input_both_required_and_optional_is_required(parity_registry: NodeRegistry, folders: Folders) -> None:
    spec = parity_registry.get("SampleRequiredAndOptional")
    assert spec is not None, parity_registry.load_failures
    scale = spec.input("scale")
    assert scale is not None and scale.kind == "required" and scale.type == "FLOAT"
    assert [item.name for item in spec.inputs] == ["value", "scale", "offset"]
    pipeline = Pipeline(parity_registry, folders)
    missing = pipeline.validate({"1": {"class_type": "SampleRequiredAndOptional", "inputs": {"value": 1.0}},
                                 "2": {"class_type": "StubOutput", "inputs": {"value": ["1", 0]}}})
    assert [error["type"] for error in missing.node_errors["1"]["errors"]] == ["required_input_missing"]
    # 2.5 is a FLOAT (the required entry); as the optional INT entry it would be refused.
    prompt = {"1": {"class_type": "SampleRequiredAndOptional", "inputs": {"value": 1.5, "scale": 2.5, "offset": 1}},
              "2": {"class_type": "StubOutput", "inputs": {"value": ["1", 0]}}}
    assert pipeline.run(prompt).ui("2") == 1.5 * 2.5 + 1


# --- 8-bit quantisation ------------------------------------------------------------------------------


def _context(folders: Folders, prompt: dict | None = None, workflow: dict | None = None) -> NodeContext:
    return NodeContext(node_id="9", display_node_id="9", prompt_id="p", folders=folders, prompt=prompt or {},
                       extra_pnginfo={"workflow": workflow} if workflow is not None else None)


def test_every_8_bit_value_survives_save_exactly(folders: Folders) -> None:
    values = torch.arange(256, dtype=torch.float32).reshape(1, 16, 16, 1).expand(1, 16, 16, 3) / 255
    for node, kind in ((save_image, "output"), (preview_image, "temp")):
        args = (values, "levels") if node is save_image else (values,)
        ui = node(_context(folders), *args).ui
        pixels = _saved_pixels(folders, ui)
        assert ui["images"][0]["type"] == kind
        assert np.array_equal(pixels[..., 0].reshape(-1), np.arange(256)), kind


def _comfyui_png(image: torch.Tensor, prompt: dict, workflow: dict) -> bytes:
    """What ComfyUI's SaveImage writes for one image: its formula and its PNG call, written out here."""
    pixels = np.clip(255.0 * image.cpu().numpy(), 0, 255).astype(np.uint8)
    info = PngInfo()
    info.add_text("prompt", json.dumps(prompt))
    info.add_text("workflow", json.dumps(workflow))
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format="PNG", pnginfo=info, compress_level=4)
    return buffer.getvalue()


def test_saved_pngs_are_byte_identical_to_comfyuis(folders: Folders) -> None:
    generator = torch.Generator().manual_seed(13)
    # Values inside and outside 0..1, including exact multiples of 1/255 and their neighbours.
    images = [torch.rand(1, 19, 23, 3, generator=generator),
              torch.randn(1, 7, 5, 3, generator=generator) * 0.7 + 0.5,
              (torch.arange(255 * 3, dtype=torch.float32).reshape(1, 15, 17, 3) / (255 * 3))]
    prompt, workflow = {"1": {"class_type": "SaveImage", "inputs": {}}}, {"nodes": [], "links": []}
    for index, image in enumerate(images):
        ui = save_image(_context(folders, prompt, workflow), image, f"same{index}").ui
        (entry,) = ui["images"]
        written = (folders.output_dir / entry["subfolder"] / entry["filename"]).read_bytes()
        assert written == _comfyui_png(image[0], prompt, workflow), index


def test_quantisation_truncates_in_the_images_own_precision() -> None:
    half = torch.tensor([[[0.2, 0.5, 0.999]]], dtype=torch.float16)
    assert np.array_equal(quantize_8bit(half), np.clip(255.0 * half.numpy(), 0, 255).astype(np.uint8))
    odd = torch.tensor([[[float("nan"), float("inf"), -float("inf")]]])
    assert quantize_8bit(odd).tolist() == [[[0, 255, 0]]]
    assert quantize_8bit(torch.tensor([[[0.9999]]])).item() == 254  # rounding would give 255


def test_load_then_save_keeps_every_pixel(parity_registry: NodeRegistry, folders: Folders) -> None:
    levels = np.random.default_rng(5).integers(0, 256, size=(16, 24, 3), dtype=np.uint8)
    PILImage.fromarray(levels).save(folders.input_dir / "levels.png")
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "levels.png"}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "again"}}}
    outcome = Pipeline(parity_registry, folders).run(prompt)
    assert np.array_equal(_saved_pixels(folders, outcome.result.outputs["2"]), levels)
