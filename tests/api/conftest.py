"""An app built by the real factory: real registry (built-in + stub nodes), executor and SQLite store."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from aiohttp import web
from aiohttp.test_utils import TestClient

from engine.cache import OutputCache
from engine.executor import Executor
from engine.paths import Folders
from engine.registry import NodeRegistry
from engine.runtime import Runtime, Settings
from modeling.manager import build_model_manager
from server.app import create_app
from server.security import SecurityConfig
from tests.fixtures.stub_nodes import stub_registry

# The smallest canvas (LiteGraph v0.4) file: EmptyImage -> PreviewImage.
MINIMAL_CANVAS = {
    "last_node_id": 2, "last_link_id": 1, "version": 0.4,
    "nodes": [
        {"id": 1, "type": "EmptyImage", "mode": 0, "inputs": [],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1], "slot_index": 0}],
         "widgets_values": [8, 8, 1, 255]},
        {"id": 2, "type": "PreviewImage", "mode": 0,
         "inputs": [{"name": "images", "type": "IMAGE", "link": 1}], "outputs": [], "widgets_values": []},
    ],
    "links": [[1, 1, 0, 2, 0, "IMAGE"]],
}


def build_runtime(folders: Folders) -> Runtime:
    registry = NodeRegistry()
    registry.discover("nodes")
    for spec in stub_registry():
        registry.register(spec)
    executor = Executor(registry, OutputCache(), folders, models=build_model_manager(torch.device("cpu")))
    settings = Settings(base_dir=folders.input_dir.parent)
    return Runtime(settings, folders, executor.device, registry, executor)


@pytest.fixture
def make_app(folders: Folders, tmp_path: Path) -> Callable[..., web.Application]:
    def make(**security: Any) -> web.Application:
        return create_app(build_runtime(folders), SecurityConfig(**security), db_path=tmp_path / "queue.sqlite3")

    return make


@pytest.fixture
async def client(aiohttp_client: Any, make_app: Callable[..., web.Application]) -> TestClient:
    return await aiohttp_client(make_app())


class Session:
    """A websocket client plus helpers to submit prompts and collect their messages."""

    def __init__(self, client: TestClient, socket: Any, client_id: str) -> None:
        self.client, self.socket, self.client_id = client, socket, client_id

    async def submit(self, prompt: dict, **extra: Any) -> dict:
        response = await self.client.post("/prompt", json={"prompt": prompt, "client_id": self.client_id, **extra})
        body = await response.json()
        assert response.status == 200, body
        return body

    async def messages_until_done(self, prompt_id: str, timeout: float = 30.0) -> list[tuple[str, dict]]:
        messages: list[tuple[str, dict]] = []
        while True:
            frame = await asyncio.wait_for(self.socket.receive(), timeout)
            if frame.type.name != "TEXT":
                messages.append(("<binary>", {"bytes": frame.data}))
                continue
            message = json.loads(frame.data)
            messages.append((message["type"], message["data"]))
            data = message["data"]
            if message["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                return messages

    async def run(self, prompt: dict, **extra: Any) -> tuple[str, list[tuple[str, dict]]]:
        prompt_id = (await self.submit(prompt, **extra))["prompt_id"]
        return prompt_id, await self.messages_until_done(prompt_id)


@pytest.fixture
async def session(client: TestClient) -> AsyncIterator[Session]:
    client_id = uuid.uuid4().hex
    socket = await client.ws_connect(f"/ws?clientId={client_id}")
    first = json.loads((await socket.receive()).data)
    assert first["type"] == "status" and first["data"]["sid"] == client_id
    yield Session(client, socket, client_id)
    await socket.close()
