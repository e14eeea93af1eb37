"""`main.py run` on the image and video files ComfyUI users have: workflows embedded in WebP
(still and animated) and WebM/MP4, the fallback to a file's embedded API prompt when its
canvas cannot be converted, and errors that name every unknown node type.

Files are written here the way ComfyUI writes them (see tests/unit/test_workflow_metadata.py).
Most runs go in-process through `main.main`, as tests/api/test_cli.py does for its error
paths; one runs the real CLI as a subprocess.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tests.api.test_cli import api_workflow, cli, in_tmp, inverted, read_png, run_main, ui_workflow  # noqa: F401 (fixture)
from tests.unit.test_workflow_metadata import comfy_exif, write_video


def webp_with(path: Path, canvas: dict[str, Any] | None, prompt: dict[str, Any] | None, frames: int = 1) -> Path:
    images = [Image.new("RGB", (16, 16), (index * 30, 90, 200)) for index in range(frames)]
    exif = comfy_exif(images[0], prompt, {"workflow": canvas} if canvas is not None else {})
    if frames == 1:
        images[0].save(path, format="WEBP", exif=exif)
    else:
        images[0].save(path, format="WEBP", save_all=True, duration=100, append_images=images[1:], exif=exif)
    return path


def png_with(path: Path, canvas: Any, prompt: Any) -> Path:
    info = PngInfo()
    info.add_text("prompt", json.dumps(prompt))
    info.add_text("workflow", json.dumps(canvas))
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


@pytest.mark.parametrize("frames", [1, 5], ids=["still", "animated"])
def test_run_webp_runs_its_embedded_canvas(in_tmp: Path, capsys: pytest.CaptureFixture[str], frames: int) -> None:
    canvas = ui_workflow(color=0x00FFFF, prefix=f"webp{frames}")
    path = webp_with(in_tmp / "saved.webp", canvas, api_workflow(color=0x000000, prefix="never"), frames)
    assert run_main("run", str(path), "--out", str(in_tmp / "out"), "--cpu") == 0, capsys.readouterr().err
    pixel, chunks = read_png(in_tmp / "out" / f"webp{frames}_00001_.png")
    assert pixel == inverted(0x00FFFF) and json.loads(chunks["workflow"]) == canvas


@pytest.mark.parametrize(("name", "container_format", "codec"), [
    ("clip.webm", "webm", "libvpx-vp9"), ("clip.mp4", "mp4", "libx264")])
def test_run_video_runs_its_embedded_canvas(in_tmp: Path, capsys: pytest.CaptureFixture[str], name: str,
                                            container_format: str, codec: str) -> None:
    canvas = ui_workflow(color=0xFFFF00, prefix=container_format)
    path = write_video(in_tmp / name, container_format, codec,
                       {"prompt": json.dumps(api_workflow()), "workflow": json.dumps(canvas)})
    assert run_main("run", str(path), "--out", str(in_tmp / "out"), "--cpu") == 0, capsys.readouterr().err
    pixel, chunks = read_png(in_tmp / "out" / f"{container_format}_00001_.png")
    assert pixel == inverted(0xFFFF00) and json.loads(chunks["workflow"]) == canvas


def test_canvas_that_cannot_convert_falls_back_to_the_embedded_prompt(in_tmp: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    canvas = ui_workflow()
    canvas["nodes"][0]["widgets_values"] = ["eight", 8, 8, 1, 0]  # shifted: the canvas cannot be read
    path = png_with(in_tmp / "shared.png", canvas, api_workflow(color=0xFF00FF, prefix="fallback"))
    assert run_main("run", str(path), "--out", str(in_tmp / "out"), "--cpu") == 0
    error = capsys.readouterr().err
    assert "node 1 ('EmptyImage')" in error and "\"eight\" cannot be the value of 'width'" in error
    assert "running the API prompt embedded beside it instead" in error
    pixel, chunks = read_png(in_tmp / "out" / "fallback_00001_.png")
    assert pixel == inverted(0xFF00FF)
    assert json.loads(chunks["workflow"]) == canvas  # the file's canvas travels on, as ComfyUI's would


def test_unknown_node_types_are_all_named_when_nothing_can_run(in_tmp: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    canvas = ui_workflow()
    canvas["nodes"][1]["type"] = "workflow>Guided"
    canvas["extra"] = {"groupNodes": {"Guided": {"nodes": [{"type": "DualCFGGuider", "inputs": [], "outputs": []}],
                                                 "links": [], "external": [], "config": {}}}}
    prompt = api_workflow()
    prompt["2"]["class_type"] = "DualCFGGuider"
    prompt["4"] = {"class_type": "VHS_VideoCombine", "inputs": {"images": ["2", 0]}, "_meta": {"title": "Video"}}
    path = png_with(in_tmp / "shared.png", canvas, prompt)
    assert run_main("run", str(path), "--cpu") == 1
    error = capsys.readouterr().err
    assert "legacy group node 'Guided' cannot be expanded" in error
    assert "'DualCFGGuider' is a ComfyUI core node Flowmill does not have yet" in error
    assert "'VHS_VideoCombine' is not a ComfyUI core node: the custom node pack that defines it may not be " \
           "installed" in error


def test_unreadable_webp_exits_1_naming_it(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = in_tmp / "cut.webp"
    path.write_bytes(b"RIFF\x20\x00\x00\x00WEBPEXIF\xff\xff\x00\x00II*\x00")
    assert run_main("run", str(path), "--cpu") == 1
    assert "cut.webp: the WebP's EXIF chunk is truncated" in capsys.readouterr().err


def test_real_cli_runs_an_animated_webp(tmp_path: Path) -> None:
    canvas = ui_workflow(color=0x00FF00, prefix="cli_webp")
    path = webp_with(tmp_path / "animation.webp", canvas, api_workflow(), frames=3)
    result = cli("run", str(path), "--out", str(tmp_path / "out"), "--cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    pixel, _ = read_png(tmp_path / "out" / "cli_webp_00001_.png")
    assert pixel == inverted(0x00FF00)
