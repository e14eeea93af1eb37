"""Image and primitive nodes, called through their specs as the executor calls them."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import engine.media
from engine.context import NodeContext
from engine.media import ImageDecodeError, read_png_text, tensor_to_pil
from engine.paths import Folders
from engine.registry import NodeRegistry
from engine.spec import NodeOutput
from tests.fixtures.pipeline import Pipeline
from tests.unit.test_media import png_header_only

PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 4}}, "2": {"class_type": "SaveImage", "inputs": {}}}
WORKFLOW = {"nodes": [{"id": 1, "type": "EmptyImage"}], "links": [], "version": 0.4}
EXTRA = {"extra_pnginfo": {"workflow": WORKFLOW}}


@pytest.fixture
def progress() -> list[tuple[float, float]]:
    return []


@pytest.fixture
def ctx(folders: Folders, progress: list[tuple[float, float]]) -> NodeContext:
    return NodeContext(
        node_id="1", display_node_id="1", prompt_id="p", folders=folders, prompt=PROMPT,
        extra_pnginfo={"workflow": WORKFLOW}, report=lambda value, total, preview: progress.append((value, total)),
    )


class Runner:
    """Calls a node's hooks the way the executor does, passing the context when wanted."""

    def __init__(self, registry: NodeRegistry, ctx: NodeContext) -> None:
        self.registry, self.ctx = registry, ctx

    def _hooks(self, node_id: str) -> Any:
        spec = self.registry.get(node_id)
        assert spec is not None, f"{node_id} is not registered"
        return spec.make_hooks()

    def _call(self, hook: Any, wants_context: bool, inputs: dict[str, Any]) -> Any:
        return hook(self.ctx, **inputs) if wants_context else hook(**inputs)

    def run(self, node_id: str, **inputs: Any) -> Any:
        hooks = self._hooks(node_id)
        return self._call(hooks.run, hooks.wants_context, inputs)

    def one(self, node_id: str, **inputs: Any) -> Any:
        result = self.run(node_id, **inputs)
        assert isinstance(result, tuple) and len(result) == 1
        return result[0]

    def fingerprint(self, node_id: str, **inputs: Any) -> Any:
        hooks = self._hooks(node_id)
        return self._call(hooks.fingerprint, hooks.wants_context, inputs)

    def validate(self, node_id: str, **inputs: Any) -> Any:
        hooks = self._hooks(node_id)
        return self._call(hooks.validate, hooks.wants_context, inputs)


@pytest.fixture
def nodes(registry: NodeRegistry, ctx: NodeContext) -> Runner:
    return Runner(registry, ctx)


def random_image(batch: int = 2, height: int = 6, width: int = 8, channels: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, height, width, channels, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------
# Pixel nodes


def test_empty_image_decodes_colour(nodes: Runner) -> None:
    image = nodes.one("EmptyImage", width=5, height=3, batch_size=2, color=0xFF8000)
    assert image.shape == (2, 3, 5, 3) and image.dtype == torch.float32
    assert torch.allclose(image, torch.tensor([1.0, 128 / 255, 0.0]).expand(2, 3, 5, 3))
    assert image.is_contiguous()


def test_invert_is_one_minus_x(nodes: Runner) -> None:
    image = random_image()
    assert torch.allclose(nodes.one("ImageInvert", image=image), 1 - image)


def test_invert_rejects_a_mask_shaped_tensor(nodes: Runner) -> None:
    with pytest.raises(ValueError, match=r"ImageInvert: image must be .*got shape \(2, 6, 8\)"):
        nodes.one("ImageInvert", image=torch.zeros(2, 6, 8))


BLEND_FORMULAS = {
    "normal": lambda a, b: b,
    "multiply": lambda a, b: a * b,
    "screen": lambda a, b: 1 - (1 - a) * (1 - b),
    "overlay": lambda a, b: torch.where(a <= 0.5, 2 * a * b, 1 - 2 * (1 - a) * (1 - b)),
    "soft_light": lambda a, b: torch.where(
        b <= 0.5,
        a - (1 - 2 * b) * a * (1 - a),
        a + (2 * b - 1) * (torch.where(a <= 0.25, ((16 * a - 12) * a + 4) * a, a.sqrt()) - a),
    ),
    # ComfyUI's signed difference; only the final mix is clamped to 0..1.
    "difference": lambda a, b: a - b,
}


@pytest.mark.parametrize("mode", sorted(BLEND_FORMULAS))
@pytest.mark.parametrize("factor", [0.0, 0.3, 1.0])
def test_blend_modes_match_formulas(nodes: Runner, mode: str, factor: float) -> None:
    a, b = random_image(seed=1), random_image(seed=2)
    expected = (a * (1 - factor) + BLEND_FORMULAS[mode](a, b) * factor).clamp(0, 1)
    result = nodes.one("ImageBlend", image1=a, image2=b, blend_factor=factor, blend_mode=mode)
    assert torch.allclose(result, expected, atol=1e-6)


def test_blend_known_values(nodes: Runner) -> None:
    a = torch.full((1, 1, 1, 3), 0.25)
    b = torch.full((1, 1, 1, 3), 0.5)
    def blend(mode: str) -> float:
        return nodes.one("ImageBlend", image1=a, image2=b, blend_factor=1.0, blend_mode=mode)[0, 0, 0, 0].item()
    assert blend("multiply") == pytest.approx(0.125)
    assert blend("screen") == pytest.approx(0.625)
    assert blend("overlay") == pytest.approx(0.25)
    assert blend("difference") == pytest.approx(0.0)  # 0.25 - 0.5 clipped at 0


def test_blend_resizes_image2_and_broadcasts_batch(nodes: Runner) -> None:
    a = random_image(batch=3, height=8, width=8)
    b = torch.full((1, 4, 4, 3), 0.5)
    result = nodes.one("ImageBlend", image1=a, image2=b, blend_factor=1.0, blend_mode="normal")
    assert result.shape == a.shape
    assert torch.allclose(result, torch.full_like(a, 0.5), atol=1e-6)


def test_blend_errors_name_the_inputs(nodes: Runner) -> None:
    with pytest.raises(ValueError, match="ImageBlend: image1 has 3 channels but image2 has 4"):
        nodes.one("ImageBlend", image1=random_image(), image2=random_image(channels=4), blend_factor=0.5,
                  blend_mode="normal")
    with pytest.raises(ValueError, match="ImageBlend: image1 has a batch of 2 but image2 has 3"):
        nodes.one("ImageBlend", image1=random_image(batch=2), image2=random_image(batch=3), blend_factor=0.5,
                  blend_mode="normal")


def test_crop_shape_and_values(nodes: Runner) -> None:
    image = random_image(height=10, width=12)
    cropped = nodes.one("ImageCrop", image=image, width=5, height=4, x=3, y=2)
    assert torch.equal(cropped, image[:, 2:6, 3:8, :])


def test_crop_is_cut_short_at_the_border(nodes: Runner) -> None:
    image = random_image(height=10, width=12)
    assert nodes.one("ImageCrop", image=image, width=512, height=512, x=8, y=0).shape == (2, 10, 4, 3)
    corner = nodes.one("ImageCrop", image=image, width=4, height=4, x=100, y=100)
    assert torch.equal(corner, image[:, 9:, 11:, :])


@pytest.mark.parametrize("method", ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"])
def test_scale_sizes_and_range(nodes: Runner, method: str) -> None:
    image = random_image(height=6, width=8)
    for width, height in ((16, 12), (3, 5)):
        result = nodes.one("ImageScale", image=image, upscale_method=method, width=width, height=height,
                           crop="disabled")
        assert result.shape == (2, height, width, 3)
        assert result.min() >= 0 and result.max() <= 1
    flat = torch.full((1, 6, 8, 3), 0.4)
    scaled = nodes.one("ImageScale", image=flat, upscale_method=method, width=13, height=7, crop="disabled")
    assert torch.allclose(scaled, torch.full_like(scaled, 0.4), atol=1e-5)


def test_scale_zero_side_keeps_aspect(nodes: Runner) -> None:
    image = random_image(height=6, width=8)
    def scale(width: int, height: int) -> tuple[int, ...]:
        result = nodes.one("ImageScale", image=image, upscale_method="bilinear", width=width, height=height,
                           crop="disabled")
        return tuple(result.shape)
    assert scale(16, 0) == (2, 12, 16, 3)
    assert scale(0, 3) == (2, 3, 4, 3)
    assert nodes.one("ImageScale", image=image, upscale_method="area", width=0, height=0, crop="disabled") is image


def test_scale_nearest_upscale_repeats_pixels(nodes: Runner) -> None:
    image = random_image(batch=1, height=2, width=3)
    result = nodes.one("ImageScale", image=image, upscale_method="nearest-exact", width=6, height=4, crop="disabled")
    expected = image.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    assert torch.equal(result, expected)


def test_scale_center_crop_keeps_the_middle(nodes: Runner) -> None:
    # A 4x8 image with distinct columns: centre-cropping to a square keeps columns 2..5.
    image = torch.arange(8, dtype=torch.float32).div(10).view(1, 1, 8, 1).expand(1, 4, 8, 3).clone()
    result = nodes.one("ImageScale", image=image, upscale_method="nearest-exact", width=4, height=4, crop="center")
    assert torch.equal(result, image[:, :, 2:6, :])


def test_scale_by_rounds_sizes(nodes: Runner) -> None:
    image = random_image(height=6, width=9)
    result = nodes.one("ImageScaleBy", image=image, upscale_method="bicubic", scale_by=1.5)
    assert result.shape == (2, 9, 14, 3)  # round(13.5) == 14 (banker's rounding), round(9.0) == 9
    assert nodes.one("ImageScaleBy", image=image, upscale_method="area", scale_by=0.01).shape == (2, 1, 1, 3)


def test_batch_concatenates_and_resizes(nodes: Runner) -> None:
    a = random_image(batch=2, height=4, width=4)
    b = torch.full((3, 8, 8, 3), 0.7)
    result = nodes.one("ImageBatch", image1=a, image2=b)
    assert result.shape == (5, 4, 4, 3)
    assert torch.equal(result[:2], a)
    assert torch.allclose(result[2:], torch.full((3, 4, 4, 3), 0.7), atol=1e-6)


def test_batch_channel_mismatch_is_an_error(nodes: Runner) -> None:
    with pytest.raises(ValueError, match="ImageBatch: image1 has 3 channels but image2 has 4"):
        nodes.one("ImageBatch", image1=random_image(), image2=random_image(channels=4))


def test_rebatch_splits_lists(nodes: Runner) -> None:
    first, second = random_image(batch=3, seed=1), random_image(batch=2, seed=2)
    frames = torch.cat([first, second])
    (batches,) = nodes.run("RebatchImages", images=[first, second], batch_size=[2])
    assert [batch.shape[0] for batch in batches] == [2, 2, 1]
    assert torch.equal(torch.cat(batches), frames)
    (singles,) = nodes.run("RebatchImages", images=[first, second], batch_size=[1])
    assert len(singles) == 5
    (merged,) = nodes.run("RebatchImages", images=[first, second], batch_size=[8])
    assert len(merged) == 1 and torch.equal(merged[0], frames)


def test_rebatch_starts_a_new_batch_when_the_size_changes(nodes: Runner) -> None:
    small, large = random_image(batch=1, height=4, width=4), random_image(batch=2, height=8, width=8)
    (batches,) = nodes.run("RebatchImages", images=[small, large], batch_size=[4])
    assert [tuple(batch.shape) for batch in batches] == [(1, 4, 4, 3), (2, 8, 8, 3)]


def test_rebatch_is_declared_as_list_node(registry: NodeRegistry) -> None:
    spec = registry.get("RebatchImages")
    assert spec is not None and spec.input_is_list and spec.outputs[0].is_list


# ---------------------------------------------------------------------------------------------
# Primitives


@pytest.mark.parametrize(
    ("node_id", "value"),
    [("PrimitiveInt", -7), ("PrimitiveFloat", 2.5), ("PrimitiveString", "cat"),
     ("PrimitiveStringMultiline", "a\nb"), ("PrimitiveBoolean", True)],
)
def test_primitives_pass_their_value(nodes: Runner, registry: NodeRegistry, node_id: str, value: object) -> None:
    assert nodes.one(node_id, value=value) == value
    spec = registry.get(node_id)
    assert spec is not None and spec.category == "utils/primitive" and [i.name for i in spec.inputs] == ["value"]


def test_multiline_flag(registry: NodeRegistry) -> None:
    multiline, single = registry.get("PrimitiveStringMultiline"), registry.get("PrimitiveString")
    assert multiline is not None and multiline.inputs[0].options.get("multiline") is True
    assert single is not None and "multiline" not in single.inputs[0].options


# ---------------------------------------------------------------------------------------------
# SaveImage / PreviewImage


def saved_files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


def test_save_image_writes_pngs_with_metadata(nodes: Runner, folders: Folders,
                                              progress: list[tuple[float, float]]) -> None:
    images = random_image(batch=2, height=5, width=7)
    result = nodes.run("SaveImage", images=images, filename_prefix="ComfyUI")
    assert isinstance(result, NodeOutput)
    assert result.ui == {"images": [
        {"filename": "ComfyUI_00001_.png", "subfolder": "", "type": "output"},
        {"filename": "ComfyUI_00002_.png", "subfolder": "", "type": "output"},
    ]}
    files = saved_files(folders.output_dir)
    assert [path.name for path in files] == ["ComfyUI_00001_.png", "ComfyUI_00002_.png"]
    for index, path in enumerate(files):
        text = read_png_text(path)
        assert json.loads(text["prompt"]) == PROMPT
        assert json.loads(text["workflow"]) == WORKFLOW
        decoded = np.array(Image.open(path).convert("RGB"))
        # ComfyUI's quantisation: clip(255 * x, 0, 255) truncated to uint8.
        assert np.array_equal(decoded, np.clip(255.0 * images[index].numpy(), 0, 255).astype(np.uint8))
    assert progress == [(1, 2), (2, 2)]
    assert not list(folders.output_dir.rglob("*.tmp"))


def test_save_image_continues_the_counter_and_uses_subfolders(nodes: Runner, folders: Folders) -> None:
    nodes.run("SaveImage", images=random_image(batch=1), filename_prefix="renders/cat")
    result = nodes.run("SaveImage", images=random_image(batch=1), filename_prefix="renders/cat")
    assert result.ui["images"] == [{"filename": "cat_00002_.png", "subfolder": "renders", "type": "output"}]
    assert (folders.output_dir / "renders" / "cat_00002_.png").is_file()


def test_save_image_scans_the_folder_once_per_batch(nodes: Runner, folders: Folders,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    scans: list[Path] = []
    original = engine.media._next_counter

    def counting(folder: Path, stem: str) -> int:
        scans.append(folder)
        return original(folder, stem)

    monkeypatch.setattr(engine.media, "_next_counter", counting)
    (folders.output_dir / "renders").mkdir()
    (folders.output_dir / "renders" / "cat_00007_.png").write_bytes(b"taken")
    result = nodes.run("SaveImage", images=random_image(batch=4), filename_prefix="renders/cat")
    assert len(scans) == 1
    assert [entry["filename"] for entry in result.ui["images"]] == [
        "cat_00008_.png", "cat_00009_.png", "cat_00010_.png", "cat_00011_.png"]
    assert {entry["subfolder"] for entry in result.ui["images"]} == {"renders"}
    assert sorted(path.name for path in (folders.output_dir / "renders").iterdir()) == [
        "cat_00007_.png", "cat_00008_.png", "cat_00009_.png", "cat_00010_.png", "cat_00011_.png"]
    nodes.run("SaveImage", images=random_image(batch=1), filename_prefix="x_1_y")  # underscores in the stem
    assert (folders.output_dir / "x_1_y_00001_.png").is_file()


def test_save_image_refuses_escaping_prefix(nodes: Runner, folders: Folders) -> None:
    with pytest.raises(ValueError, match="outside the output folder"):
        nodes.run("SaveImage", images=random_image(batch=1), filename_prefix="../../evil")
    assert saved_files(folders.output_dir.parent) == []


def test_save_image_without_workflow(nodes: Runner, folders: Folders) -> None:
    nodes.ctx = NodeContext(node_id="1", display_node_id="1", prompt_id="p", folders=folders)
    nodes.run("SaveImage", images=random_image(batch=1), filename_prefix="bare")
    assert read_png_text(folders.output_dir / "bare_00001_.png") == {}


def test_preview_image_writes_to_temp(nodes: Runner, folders: Folders) -> None:
    result = nodes.run("PreviewImage", images=random_image(batch=1, channels=4))
    (entry,) = result.ui["images"]
    assert entry["type"] == "temp" and entry["subfolder"] == ""
    assert re.fullmatch(r"ComfyUI_temp_[a-z]{5}_00001_\.png", entry["filename"])
    path = folders.temp_dir / entry["filename"]
    assert Image.open(path).mode == "RGBA"
    assert json.loads(read_png_text(path)["workflow"]) == WORKFLOW
    assert saved_files(folders.output_dir) == []


def test_save_and_preview_are_output_nodes(registry: NodeRegistry) -> None:
    for node_id in ("SaveImage", "PreviewImage"):
        spec = registry.get(node_id)
        assert spec is not None and spec.output_node and spec.outputs == ()


# ---------------------------------------------------------------------------------------------
# LoadImage


def test_load_image_round_trips_a_saved_rgba_png(nodes: Runner, folders: Folders) -> None:
    rgba = random_image(batch=1, height=5, width=7, channels=4)
    result = nodes.run("SaveImage", images=rgba, filename_prefix="round")
    name = result.ui["images"][0]["filename"] + " [output]"
    assert nodes.validate("LoadImage", image=name) is True
    image, mask = nodes.run("LoadImage", image=name)
    quantised = (rgba * 255).clamp(0, 255).floor() / 255  # ComfyUI's truncating quantisation
    assert image.shape == (1, 5, 7, 3) and mask.shape == (1, 5, 7)
    assert torch.allclose(image, quantised[..., :3], atol=1e-6)
    assert torch.allclose(mask, 1 - quantised[..., 3], atol=1e-6)


def test_load_image_from_input_subfolder(nodes: Runner, folders: Folders) -> None:
    (folders.input_dir / "sub").mkdir()
    tensor_to_pil(torch.full((1, 3, 4, 3), 0.2)).save(folders.input_dir / "sub" / "x.jpg", quality=95)
    image, mask = nodes.run("LoadImage", image="sub/x.jpg")
    assert image.shape == (1, 3, 4, 3) and torch.allclose(image, torch.full_like(image, 0.2), atol=0.02)
    assert torch.count_nonzero(mask) == 0 and mask.shape == (1, 3, 4)


def test_load_image_fingerprint_follows_file_content(nodes: Runner, folders: Folders) -> None:
    path = folders.input_dir / "a.png"
    tensor_to_pil(torch.zeros(1, 2, 2, 3)).save(path)
    first = nodes.fingerprint("LoadImage", image="a.png")
    assert first == nodes.fingerprint("LoadImage", image="a.png")
    tensor_to_pil(torch.ones(1, 2, 2, 3)).save(path)
    second = nodes.fingerprint("LoadImage", image="a.png")
    assert isinstance(first, str) and first != second
    assert math.isnan(nodes.fingerprint("LoadImage", image="missing.png"))
    assert math.isnan(nodes.fingerprint("LoadImage", image=None))


@pytest.mark.parametrize("name", ["missing.png", "../outside.png", "sub/../../outside.png", "/etc/passwd",
                                  "x.png [output]"])
def test_load_image_validate_rejects_missing_and_escaping(nodes: Runner, folders: Folders, name: str) -> None:
    (folders.input_dir.parent / "outside.png").write_bytes(b"")
    assert nodes.validate("LoadImage", image=name) == f"Invalid image file: {name}"
    with pytest.raises(FileNotFoundError, match="Invalid image file"):
        nodes.run("LoadImage", image=name)


def test_load_image_rejects_unsupported_format(nodes: Runner, folders: Folders) -> None:
    Image.new("RGB", (2, 2)).save(folders.input_dir / "x.png", format="TIFF")
    with pytest.raises(ValueError, match=r"x\.png: not an image in a supported format"):
        nodes.run("LoadImage", image="x.png")


def test_load_image_declaration_matches_comfyui(registry: NodeRegistry, folders: Folders) -> None:
    spec = registry.get("LoadImage")
    assert spec is not None and [output.name for output in spec.outputs] == ["IMAGE", "MASK"]
    tensor_to_pil(torch.zeros(1, 2, 2, 3)).save(folders.input_dir / "listed.png")
    info = registry.object_info(folders.choices)["LoadImage"]
    listing, options = info["input"]["required"]["image"]
    assert listing == ["listed.png"] and options["image_upload"] is True


# ---------------------------------------------------------------------------------------------
# Through the real validator and executor


@pytest.fixture
def pipeline(registry: NodeRegistry, folders: Folders) -> Pipeline:
    return Pipeline(registry, folders)


def test_generate_invert_save_then_load(pipeline: Pipeline, folders: Folders) -> None:
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 6, "height": 4, "batch_size": 2, "color": 0x336699}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "e2e/inv"}},
    }
    result = pipeline.run(prompt, extra_data=EXTRA).result
    written = result.outputs["3"]["images"]
    assert [entry["filename"] for entry in written] == ["inv_00001_.png", "inv_00002_.png"]
    path = folders.output_dir / "e2e" / "inv_00001_.png"
    assert json.loads(read_png_text(path)["prompt"])["3"]["inputs"]["filename_prefix"] == "e2e/inv"
    assert json.loads(read_png_text(path)["workflow"]) == WORKFLOW

    load = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "e2e/inv_00001_.png [output]"}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    result = pipeline.run(load, extra_data=EXTRA).result
    (preview,) = result.outputs["2"]["images"]
    with Image.open(folders.temp_dir / preview["filename"]) as shown:
        # ComfyUI truncates: 1 - 0x99/255 in float32 is 101.99998 / 255, saved as 101.
        inverted = 1.0 - np.array([0x33, 0x66, 0x99], dtype=np.float32) / 255.0
        assert shown.getpixel((0, 0)) == tuple(np.clip(255.0 * inverted, 0, 255).astype(np.uint8).tolist())
        assert shown.getpixel((0, 0)) == (255 - 0x33, 255 - 0x66, 255 - 0x99 - 1)


def test_load_image_cache_follows_the_file(pipeline: Pipeline, folders: Folders) -> None:
    path = folders.input_dir / "in.png"
    tensor_to_pil(torch.zeros(1, 2, 2, 3)).save(path)
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    first = pipeline.run(prompt, extra_data=EXTRA).ran
    second = pipeline.run(prompt, extra_data=EXTRA).ran
    tensor_to_pil(torch.ones(1, 2, 2, 3)).save(path)
    third = pipeline.run(prompt, extra_data=EXTRA).ran
    assert "1" in first and second == [] and "1" in third


def test_validation_reports_invalid_image_file(pipeline: Pipeline) -> None:
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "../secret.png"}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    checked = pipeline.validate(prompt)
    assert not checked.ok
    assert "Invalid image file: ../secret.png" in json.dumps(checked.node_errors)


def test_rebatch_through_the_executor(pipeline: Pipeline) -> None:
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 2, "height": 2, "batch_size": 5, "color": 0}},
        "2": {"class_type": "RebatchImages", "inputs": {"images": ["1", 0], "batch_size": 2}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }
    result = pipeline.run(prompt, extra_data=EXTRA).result
    assert [tuple(batch.shape) for batch in result.values["2"][0]] == [(2, 2, 2, 3), (2, 2, 2, 3), (1, 2, 2, 3)]
    assert len(result.outputs["3"]["images"]) == 5  # PreviewImage ran once per batch


def test_load_image_refuses_a_decompression_bomb(nodes: Runner, folders: Folders) -> None:
    (folders.input_dir / "bomb.png").write_bytes(png_header_only(50_000, 50_000))
    with pytest.raises(ImageDecodeError, match=r"bomb\.png: image has 2,500,000,000 pixels"):
        nodes.run("LoadImage", image="bomb.png")
