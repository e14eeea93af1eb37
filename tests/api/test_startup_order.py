"""Start-up order (issue 13 §3): the page is served while the nodes still load; requests that need
the registry, and the prompt worker, wait for it; a loading failure is a 503 naming it."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from engine.cache import OutputCache
from engine.executor import Executor
from engine.paths import Folders
from engine.registry import NodeRegistry
from engine.runtime import Runtime, Settings
from server.app import create_app
from server.security import SecurityConfig
from server.startup import NodeLoading
from tests.api.conftest import MINIMAL_CANVAS
from tests.fixtures.stub_nodes import stub_registry


def _runtime_with_empty_registry(folders: Folders) -> Runtime:
    registry = NodeRegistry()
    executor = Executor(registry, OutputCache(), folders)
    return Runtime(Settings(base_dir=folders.input_dir.parent), folders, executor.device, registry, executor)


def _fill(registry: NodeRegistry) -> None:
    registry.discover("nodes")
    for spec in stub_registry():
        registry.register(spec)


async def test_the_page_answers_while_nodes_load_and_the_rest_waits_for_them(
        aiohttp_client: Any, folders: Folders, tmp_path: Path) -> None:
    runtime = _runtime_with_empty_registry(folders)
    release = threading.Event()

    def load() -> None:
        assert release.wait(30)
        _fill(runtime.registry)

    app = create_app(runtime, SecurityConfig(), db_path=tmp_path / "queue.sqlite3", nodes=NodeLoading(load))
    client = await aiohttp_client(app)
    page = await client.get("/")
    assert page.status in (200, 404)  # 404 only where web/index.html is not installed
    object_info = asyncio.ensure_future(client.get("/object_info"))
    queued = asyncio.ensure_future(client.post("/prompt", json={"prompt": MINIMAL_CANVAS}))
    await asyncio.sleep(0.3)
    assert not object_info.done() and not queued.done()  # held, not answered from a half-empty registry
    release.set()
    nodes = await (await object_info).json()
    assert "EmptyImage" in nodes and "StubFail" in nodes
    answer = await queued
    assert answer.status == 200, await answer.text()
    prompt_id = (await answer.json())["prompt_id"]
    for _ in range(200):  # the worker starts once the nodes are in, and runs the prompt queued meanwhile
        history = await (await client.get(f"/history/{prompt_id}")).json()
        if history:
            assert history[prompt_id]["status"]["status_str"] == "success"
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the prompt queued during loading never ran")


async def test_a_failed_load_is_a_503_naming_it_and_the_page_still_loads(
        aiohttp_client: Any, folders: Folders, tmp_path: Path) -> None:
    def load() -> None:
        raise ImportError("No module named 'broken_pack'")

    app = create_app(_runtime_with_empty_registry(folders), SecurityConfig(), db_path=tmp_path / "queue.sqlite3",
                     nodes=NodeLoading(load))
    client = await aiohttp_client(app)
    response = await client.get("/object_info")
    assert response.status == 503
    assert "broken_pack" in (await response.json())["error"]
    assert (await client.get("/")).status in (200, 404)
