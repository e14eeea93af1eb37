"""Control routes stay responsive (issue 13 §1): `/queue` answers fast while eight clients ask for
JPEG previews of a legal 9000x9000 PNG, because file work has its own small pool; previews are
cached and shared while they run."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

import server.file_routes
from engine.paths import Folders
from server.appkeys import PREVIEWS
from server.previews import PreviewCache
from tests.api.preview_load import PreviewLoad, percentile, timed_get, write_big_png
from tests.api.server_process import ServerProcess

QUEUE_P99_LIMIT_SECONDS = 0.050


def test_queue_p99_stays_under_50_ms_during_eight_big_previews(tmp_path: Path) -> None:
    from PIL import Image

    name = write_big_png(tmp_path / "input")
    Image.new("RGB", (32, 32), (5, 6, 7)).save(tmp_path / "input" / "thumb.png")
    server = ServerProcess(tmp_path).start()
    try:
        with PreviewLoad(server.url, name, parallel=8) as load:
            deadline = time.monotonic() + 60
            while load.completed == 0 and time.monotonic() < deadline:  # the pool is busy converting
                timed_get(server.url + "/queue")
            latencies = [timed_get(server.url + "/queue") for _ in range(150)]
            # Small files do not queue behind the decodes either: path checks have their own pool.
            thumbnails = [timed_get(server.url + "/view?filename=thumb.png&type=input") for _ in range(20)]
            served = load.completed
        assert served >= 1 and load.errors == 0  # the load was real: full previews came back
        assert percentile(latencies, 0.99) < QUEUE_P99_LIMIT_SECONDS, sorted(latencies)[-10:]
        assert max(thumbnails) < 0.5, sorted(thumbnails)[-5:]  # one decode alone takes longer than that
    finally:
        server.stop()


async def test_identical_previews_are_converted_once_and_then_cached(client: TestClient, folders: Folders,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    Image.new("RGB", (64, 48), (10, 200, 30)).save(folders.input_dir / "shot.png")
    conversions = []
    original = server.file_routes._converted_image

    def counted(*args: object) -> tuple[bytes, str]:
        conversions.append(args)
        time.sleep(0.2)  # long enough for all requests to arrive while the first one runs
        return original(*args)

    monkeypatch.setattr(server.file_routes, "_converted_image", counted)
    url = "/view?filename=shot.png&type=input&preview=jpeg;80"
    responses = await asyncio.gather(*(client.get(url) for _ in range(6)))
    bodies = {await response.read() for response in responses}
    assert [response.status for response in responses] == [200] * 6 and len(bodies) == 1
    assert len(conversions) == 1  # shared while running
    assert (await (await client.get(url)).read()) in bodies and len(conversions) == 1  # then cached
    assert (await client.get(url.replace("80", "81"))).status == 200 and len(conversions) == 2  # another key
    Image.new("RGB", (64, 48), (250, 0, 0)).save(folders.input_dir / "shot.png")  # overwritten: converted again
    changed = await (await client.get(url)).read()
    assert changed not in bodies and len(conversions) == 3
    assert client.app[PREVIEWS].size <= client.app[PREVIEWS].max_bytes


async def test_the_preview_cache_stays_within_its_byte_budget() -> None:
    cache = PreviewCache(max_bytes=1000, max_entry_bytes=400)

    async def make(size: int) -> tuple[bytes, str]:
        return b"x" * size, "JPEG"

    for index in range(10):
        await cache.get(("file", index), lambda: make(300))
    assert cache.size <= 1000 and len(cache) == 3
    await cache.get("too big", lambda: make(401))
    assert "too big" not in cache._entries  # larger than one entry may be: served, never kept


async def test_a_failed_conversion_reaches_every_waiter_and_is_not_cached() -> None:
    cache = PreviewCache()
    calls = []

    async def fail() -> tuple[bytes, str]:
        calls.append(1)
        await asyncio.sleep(0.05)
        raise ValueError("corrupt PNG data")

    results = await asyncio.gather(*(cache.get("key", fail) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(result, ValueError) for result in results) and len(calls) == 1
    with pytest.raises(ValueError):
        await cache.get("key", fail)
    assert len(calls) == 2
