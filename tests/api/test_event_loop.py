"""Nothing that can block runs on the event loop: SQLite, folder walks, path checks, Pillow.

Every such function is wrapped to note the thread that calls it; a session that touches each
route must leave no call on the loop's own thread (security.md §4, "Many clients"). The store's
lock can be held through a worker's `synchronous=FULL` commit, so one count on the loop stalls
every client.
"""

from __future__ import annotations

import asyncio
import functools
import io
import threading
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from PIL import Image

import server.file_routes
from engine.paths import Folders
from engine.registry import NodeRegistry
from server.store import PromptStore
from tests.api.conftest import MINIMAL_CANVAS

STORE_METHODS = ("queue_remaining", "next_number", "enqueue", "queue", "delete_pending", "clear_pending",
                 "history", "history_item", "state_of", "delete_history", "clear_history", "finish",
                 "claim_next", "recover_after_restart", "close")
CANVAS = MINIMAL_CANVAS


class LoopCalls:
    """Names of the wrapped functions that were called on the loop's thread."""

    def __init__(self) -> None:
        self.loop_thread = threading.get_ident()
        self.names: list[str] = []

    def watch(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def watched(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == self.loop_thread:
                self.names.append(name)
            return function(*args, **kwargs)

        return watched


@pytest.fixture
def loop_calls(monkeypatch: pytest.MonkeyPatch) -> LoopCalls:
    calls = LoopCalls()
    for name in STORE_METHODS:
        monkeypatch.setattr(PromptStore, name, calls.watch(f"PromptStore.{name}", getattr(PromptStore, name)))
    monkeypatch.setattr(Folders, "list_files", calls.watch("Folders.list_files", Folders.list_files))
    monkeypatch.setattr(NodeRegistry, "object_info", calls.watch("NodeRegistry.object_info", NodeRegistry.object_info))
    for name in ("resolve_under", "open_image_safely"):
        monkeypatch.setattr(server.file_routes, name, calls.watch(name, getattr(server.file_routes, name)))
    return calls


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (4, 4), (1, 2, 3, 4)).save(buffer, "PNG")
    return buffer.getvalue()


async def _upload(client: TestClient, route: str, **fields: str) -> None:
    form = FormData()
    form.add_field("image", _png(), filename="up.png", content_type="image/png")
    for key, value in fields.items():
        form.add_field(key, value)
    response = await client.post(route, data=form)
    assert response.status == 200, await response.text()


async def _touch_every_route(client: TestClient) -> None:
    socket = await client.ws_connect("/ws?clientId=watcher")
    assert (await socket.receive(timeout=5)).json()["type"] == "status"
    first = await (await client.post("/prompt", json={"prompt": CANVAS, "client_id": "watcher"})).json()
    while True:  # the worker runs it meanwhile; wait for its end
        message = (await socket.receive(timeout=20)).json()
        if message["type"] == "executing" and message["data"]["node"] is None:
            break
    assert message["data"]["prompt_id"] == first["prompt_id"]
    for path in ("/prompt", "/queue", "/history", f"/history/{first['prompt_id']}", f"/jobs/{first['prompt_id']}",
                 "/object_info", "/object_info/LoadImage", "/models/checkpoints", "/embeddings", "/extensions",
                 "/features", "/system_stats"):
        assert (await client.get(path)).status == 200, path
    await _upload(client, "/upload/image")
    await _upload(client, "/upload/mask", original_ref='{"filename": "up.png", "type": "input"}')
    for params in ({"filename": "up.png", "type": "input"}, {"filename": "up.png", "type": "input",
                                                            "preview": "webp;50"}):
        assert (await client.get("/view", params=params)).status == 200
    await client.post("/queue", json={"clear": True})
    await client.post("/history", json={"delete": [first["prompt_id"]]})
    await client.post("/jobs/nothing/cancel")
    await socket.close()


async def test_no_blocking_call_runs_on_the_event_loop(aiohttp_client: Any, make_app: Any,
                                                       loop_calls: LoopCalls) -> None:
    client = await aiohttp_client(make_app())  # built after the patches: the hub keeps a bound method
    await _touch_every_route(client)
    await client.close()  # shutdown too: the store is closed off the loop
    await asyncio.sleep(0)
    assert loop_calls.names == [], f"called on the event loop: {sorted(set(loop_calls.names))}"
