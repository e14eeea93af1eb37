"""`python main.py` opens with workflows/default.json, and that workflow generates on the shipped model.

Both commands run as real subprocesses on 127.0.0.1, as a user would start them, against the
repository's models/ folder (the shipped demo checkpoint) and a temporary working directory.
"""

from __future__ import annotations

import asyncio
import io
import json
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import websockets
from PIL import Image

from tests.api.server_process import ServerProcess

REPO = Path(__file__).resolve().parents[2]
DEFAULT = REPO / "workflows" / "default.json"
MODELS = REPO / "models"


def saved_images(history_entry: dict) -> list[dict]:
    return [image for output in history_entry["outputs"].values() for image in output.get("images", [])]


async def _queue_and_watch(server: ServerProcess, workflow: dict) -> tuple[str, list[dict], list[bytes]]:
    """Queue a canvas workflow as the browser page does; collect its messages and binary frames."""
    client_id = uuid.uuid4().hex
    async with websockets.connect(f"ws://127.0.0.1:{server.port}/ws?clientId={client_id}") as socket:
        await socket.recv()  # the initial status
        body = {"prompt": workflow, "client_id": client_id, "extra_data": {"extra_pnginfo": {"workflow": workflow}}}
        prompt_id = (await asyncio.to_thread(server.post, "/api/prompt", body))["prompt_id"]
        messages, frames = [], []
        while True:
            raw = await asyncio.wait_for(socket.recv(), 120)
            if isinstance(raw, bytes):
                frames.append(raw)
                continue
            message = json.loads(raw)
            messages.append(message)
            if message["type"] == "executing" and message["data"]["node"] is None:
                return prompt_id, messages, frames


def test_server_opens_with_the_default_workflow_and_runs_it_with_live_previews(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, extra_args=["--models-dir", str(MODELS)]).start()
    try:
        workflow = server.get("/api/flowmill/default_workflow")
        assert workflow == json.loads(DEFAULT.read_text())
        prompt_id, messages, frames = asyncio.run(_queue_and_watch(server, workflow))
        assert "execution_success" in [message["type"] for message in messages], messages[-3:]
        sampler = next(str(node["id"]) for node in workflow["nodes"] if node["type"] == "KSampler")
        steps = [message["data"] for message in messages
                 if message["type"] == "progress" and message["data"]["node"] == sampler]
        assert steps[-1]["value"] == steps[-1]["max"] == 20  # progress for every KSampler step
        # Preview frames: ComfyUI's binary layout, event type 1 (preview image), format 1 (JPEG).
        assert frames and all(struct.unpack(">II", frame[:8]) == (1, 1) for frame in frames)
        with Image.open(io.BytesIO(frames[-1][8:])) as preview:
            assert preview.format == "JPEG" and preview.size == (64, 64)
        entry = server.get(f"/api/history/{prompt_id}")[prompt_id]
        (image,) = saved_images(entry)
        with Image.open(tmp_path / "output" / image["subfolder"] / image["filename"]) as png:
            assert png.size == (64, 64)
            assert json.loads(png.text["workflow"]) == workflow
        # The model manager keeps the checkpoint's three parts loaded and lists them; /free unloads them.
        models = server.get("/system_stats")["models"]
        assert sorted(item["component"] for item in models["loaded"]) == ["diffusion_model", "text_encoder", "vae"]
        assert all(item["name"] == "flowmill-shapes-demo" and item["bytes"] > 0 for item in models["loaded"])
        assert 0 < models["ram_used"] <= models["ram_budget"]
        server.post("/free", {"unload_models": True})
        assert _eventually(lambda: server.get("/system_stats")["models"]["loaded"] == [])
    finally:
        server.stop()


def _eventually(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Whether `check` becomes true within `seconds` (the worker applies /free between prompts)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_serve_refuses_a_missing_default_workflow(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "main.py"), "serve", "--workflow", "missing.json",
                             "--port", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "default workflow not found" in result.stderr


@pytest.mark.parametrize("name", ["default.json", "img2img.json"])
def test_cli_runs_a_shipped_workflow_and_embeds_it(tmp_path: Path, name: str) -> None:
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "example.png").write_bytes((REPO / "input" / "example.png").read_bytes())
    result = subprocess.run([sys.executable, str(REPO / "main.py"), "run", str(REPO / "workflows" / name),
                             "--models-dir", str(MODELS), "--out", str(tmp_path / "out"), "--cpu"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (written,) = [Path(line) for line in result.stdout.split()]
    with Image.open(written) as png:
        assert png.size == (64, 64)
        assert json.loads(png.text["workflow"]) == json.loads((REPO / "workflows" / name).read_text())
