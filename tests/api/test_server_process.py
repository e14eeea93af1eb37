"""A real server subprocess: an end-to-end websocket run, and surviving kill -9."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from tests.api.server_process import ServerProcess


def slow_graph(seconds: float, color: int) -> dict:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color}},
        "2": {"class_type": "SlowPassthrough", "inputs": {"image": ["1", 0], "seconds": seconds}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "e2e"}},
    }


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path).start()
    yield process
    process.stop()


async def _run_over_websocket(server: ServerProcess, prompt: dict) -> tuple[str, list[dict]]:
    client_id = uuid.uuid4().hex
    async with websockets.connect(f"ws://127.0.0.1:{server.port}/ws?clientId={client_id}") as socket:
        first = json.loads(await socket.recv())
        assert first["type"] == "status" and first["data"]["sid"] == client_id
        body = await asyncio.to_thread(server.post, "/prompt", {"prompt": prompt, "client_id": client_id})
        messages = []
        while True:
            raw = await asyncio.wait_for(socket.recv(), 30)
            if isinstance(raw, bytes):
                continue
            message = json.loads(raw)
            messages.append(message)
            data = message["data"]
            if message["type"] == "executing" and data["node"] is None and data["prompt_id"] == body["prompt_id"]:
                return body["prompt_id"], messages


def test_end_to_end_run_over_websocket_with_a_custom_node_pack(server: ServerProcess) -> None:
    prompt_id, messages = asyncio.run(_run_over_websocket(server, slow_graph(0.3, 0x00FF00)))
    kinds = [message["type"] for message in messages]
    assert kinds[0] == "status" and "execution_start" in kinds and kinds[-2:] == ["execution_success", "executing"]
    progress = [message["data"] for message in messages
                if message["type"] == "progress" and message["data"]["node"] == "2"]
    assert progress and progress[-1]["value"] == progress[-1]["max"] == int(0.3 / 0.05)
    image = server.get(f"/history/{prompt_id}")[prompt_id]["outputs"]["3"]["images"][0]
    query = urllib.parse.urlencode({"filename": image["filename"], "subfolder": image["subfolder"],
                                    "type": image["type"]})
    with urllib.request.urlopen(f"{server.url}/view?{query}", timeout=10) as response:
        assert response.read()[:8] == b"\x89PNG\r\n\x1a\n"


def _wait_until_running(server: ServerProcess, prompt_id: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = server.get("/queue")["queue_running"]
        if running and running[0][1] == prompt_id:
            return
        time.sleep(0.05)
    raise AssertionError(f"prompt {prompt_id} never started")


def test_kill_minus_nine_mid_run_keeps_queue_and_history(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).start()
    try:
        done = server.post("/prompt", {"prompt": slow_graph(0.05, 1)})["prompt_id"]
        prompts = {str(color): slow_graph(3.0, color) for color in range(10, 15)}
        ids = [server.post("/prompt", {"prompt": prompt})["prompt_id"] for prompt in prompts.values()]
        _wait_until_running(server, ids[0])
        server.kill()
    finally:
        server.stop()
    restarted = ServerProcess(tmp_path, server.port).start()
    try:
        queue = restarted.get("/queue")
        listed = [item[1] for item in queue["queue_running"] + queue["queue_pending"]]
        assert listed == ids[1:], "pending prompts must survive, in their original order"
        listed_prompts = [item[2] for item in queue["queue_running"] + queue["queue_pending"]]
        assert [prompt["2"]["inputs"]["seconds"] for prompt in listed_prompts] == [3.0] * 4
        interrupted = restarted.get(f"/history/{ids[0]}")[ids[0]]
        assert interrupted["status"]["status_str"] == "error" and interrupted["status"]["completed"] is False
        assert [kind for kind, _ in interrupted["status"]["messages"]] == ["execution_interrupted"]
        assert restarted.get(f"/history/{done}")[done]["status"]["status_str"] == "success"
        restarted.post("/queue", {"clear": True})
        restarted.post("/interrupt", {})
    finally:
        restarted.stop()
    assert not list(tmp_path.rglob("*.tmp"))
