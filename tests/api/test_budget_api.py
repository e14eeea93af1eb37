"""The tensor budget at the door: POST /prompt and `main.py run` refuse oversized graphs before queueing.

The examples are issue 13's; each used to be accepted and fail only when the worker tried to
allocate it. The app is the real factory's, with a real SQLite store.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from engine.paths import Folders
from server.app import create_app
from server.security import SecurityConfig
from tests.api.conftest import build_runtime

GIB = 1024**3


def _image(width: int, height: int, batch: int) -> dict[str, Any]:
    return {"class_type": "EmptyImage", "inputs": {"width": width, "height": height, "batch_size": batch, "color": 0},
            "_meta": {"title": "Canvas"}}


def _scaled(source: str, side: int) -> dict[str, Any]:
    return {"class_type": "ImageScale", "inputs": {"image": [source, 0], "upscale_method": "nearest-exact",
                                                    "width": side, "height": side, "crop": "disabled"}}


def _latent(kind: str, side: int, batch: int) -> dict[str, Any]:
    return {"class_type": kind, "inputs": {"width": side, "height": side, "batch_size": batch}}


def _preview(source: str) -> dict[str, Any]:
    return {"class_type": "PreviewImage", "inputs": {"images": [source, 0]}}


def _show(source: str) -> dict[str, Any]:
    return {"class_type": "StubOutput", "inputs": {"value": [source, 0]}}


EXAMPLES = {
    "empty_image": ({"1": _image(16384, 16384, 4096), "2": _preview("1")}, "1"),
    "empty_latent": ({"1": _latent("EmptyLatentImage", 16384, 4096), "2": _show("1")}, "1"),
    "empty_sd3_latent": ({"1": _latent("EmptySD3LatentImage", 16384, 4096), "2": _show("1")}, "1"),
    "image_scale": ({"1": _image(64, 64, 64), "2": _scaled("1", 16384), "3": _preview("2")}, "2"),
    "latent_upscale": ({"1": _latent("EmptyLatentImage", 512, 4096),
                        "2": {"class_type": "LatentUpscale", "inputs": {"samples": ["1", 0], "width": 16384,
                                                                        "height": 16384, "upscale_method": "bilinear",
                                                                        "crop": "disabled"}},
                        "3": _show("2")}, "2"),
}


@pytest.fixture
def app_with_budget(folders: Folders, tmp_path: Path) -> Callable[[int | None], web.Application]:
    def make(max_tensor_bytes: int | None) -> web.Application:
        runtime = build_runtime(folders)
        runtime.settings = dataclasses.replace(runtime.settings, max_tensor_bytes=max_tensor_bytes)
        return create_app(runtime, SecurityConfig(), db_path=tmp_path / "queue.sqlite3")

    return make


@pytest.mark.parametrize("name", list(EXAMPLES))
async def test_post_prompt_refuses_the_issue_examples(name: str, aiohttp_client: Any,
                                                      app_with_budget: Callable[..., web.Application]) -> None:
    client: TestClient = await aiohttp_client(app_with_budget(8 * GIB))
    prompt, refused = EXAMPLES[name]
    response = await client.post("/prompt", json={"prompt": prompt})
    assert response.status == 400
    body = await response.json()
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    (error,) = body["node_errors"][refused]["errors"]
    assert error["type"] == "tensor_budget_exceeded"
    assert "8.0 GiB" in error["message"] and "--max-tensor-bytes" in error["message"]
    assert error["extra_info"]["estimated_bytes"] > 8 * GIB
    assert body["node_errors"][refused]["class_type"] == prompt[refused]["class_type"]
    # Nothing was queued, and the server carries on.
    assert (await (await client.get("/queue")).json()) == {"queue_running": [], "queue_pending": []}
    assert (await client.post("/prompt", json={"prompt": {"1": _image(8, 8, 1), "2": _preview("1")}})).status == 200


async def test_the_budget_setting_changes_the_outcome(aiohttp_client: Any,
                                                      app_with_budget: Callable[..., web.Application]) -> None:
    prompt = {"1": _image(64, 64, 2), "2": _preview("1")}  # 96 KiB of pixels
    strict: TestClient = await aiohttp_client(app_with_budget(64 * 1024))
    refused = await strict.post("/prompt", json={"prompt": prompt})
    assert refused.status == 400
    assert (await refused.json())["node_errors"]["1"]["errors"][0]["extra_info"]["estimated_bytes"] == 96 * 1024
    roomy: TestClient = await aiohttp_client(app_with_budget(128 * 1024))
    assert (await roomy.post("/prompt", json={"prompt": prompt})).status == 200


async def test_without_the_setting_the_budget_comes_from_the_machine(
        aiohttp_client: Any, app_with_budget: Callable[..., web.Application]) -> None:
    client: TestClient = await aiohttp_client(app_with_budget(None))
    response = await client.post("/prompt", json={"prompt": EXAMPLES["empty_image"][0]})  # 12 TiB
    assert response.status == 400
    (error,) = (await response.json())["node_errors"]["1"]["errors"]
    assert error["type"] == "tensor_budget_exceeded" and error["extra_info"]["max_tensor_bytes"] > 0


# --- the command line -------------------------------------------------------------------------


def test_the_flag_parses_sizes_into_the_settings() -> None:
    import main

    parser = main.build_parser()
    for command in (["serve"], ["run", "workflow.json"]):
        args = parser.parse_args([*command, "--max-tensor-bytes", "8GiB"])
        assert main._settings(args, parser).max_tensor_bytes == 8 * GIB
    assert main._settings(parser.parse_args(["serve"]), parser).max_tensor_bytes is None
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--max-tensor-bytes", "lots"])


def test_headless_run_refuses_before_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import main

    monkeypatch.chdir(tmp_path)  # the runtime's default folders live under the working directory
    workflow = tmp_path / "huge.json"
    workflow.write_text(json.dumps(EXAMPLES["empty_image"][0]))
    assert main.main(["run", str(workflow), "--cpu", "--safe-mode"]) == 1
    error = capsys.readouterr().err
    assert "node 1 (EmptyImage, \"Canvas\")" in error
    assert "12.0 TiB" in error and "--max-tensor-bytes" in error and "batch_size=4096" in error
    assert not list((tmp_path / "temp").glob("*.png"))  # nothing ran
