"""Review fixes on the server surface: odd websocket values, /view conversions, upload names,
the feature-flag map, websocket close tasks and GET /jobs/{id}."""

from __future__ import annotations

import asyncio
import gc
import io
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from PIL import Image

from engine.paths import Folders
from server.appkeys import HUB, SECURITY
from server.messages import Message
from server.serving import content_disposition
from server.ws import SocketHub, _Client, server_features
from tests.api.conftest import Session


def _png(width: int = 4, height: int = 4, color: tuple[int, ...] = (10, 20, 30, 128)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


async def _upload(client: TestClient, data: bytes, name: str, **fields: str) -> Any:
    """A multipart upload with the file name sent as is, as browsers and `requests` send it
    (aiohttp's FormData would percent-encode the '/')."""
    boundary = "flowmill-test-boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
             for key, value in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
                 "Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return await client.post("/upload/image", data=body,
                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})


async def _eventually(check: Callable[[], Any], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


# --- websocket: one odd value never drops the client ------------------------------------------


async def test_a_value_json_cannot_hold_does_not_drop_the_client(session: Session, client: TestClient) -> None:
    circular: dict[str, Any] = {}
    circular["self"] = circular
    client.app[HUB].deliver([
        (Message("odd", {"value": object()}), session.client_id),
        (Message("circular", circular), session.client_id),  # cannot be encoded at all: skipped alone
        (Message("after", {"ok": True}), session.client_id),
    ])
    odd = (await session.socket.receive(timeout=5)).json()
    assert odd["type"] == "odd" and odd["data"]["value"].startswith("<object object")
    after = (await session.socket.receive(timeout=5)).json()
    assert after == {"type": "after", "data": {"ok": True}}
    assert len(client.app[HUB]) == 1


async def test_queue_status_reaches_the_client_before_the_prompt_starts(session: Session) -> None:
    graph = {"1": {"class_type": "StubImage", "inputs": {"content": "WHITE", "height": 2, "width": 2,
                                                         "batch_size": 1}},
             "2": {"class_type": "StubOutput", "inputs": {"value": ["1", 0]}}}
    for _ in range(5):  # the status count is read in a thread; the worker must not overtake it
        graph["1"]["inputs"]["height"] += 1
        _, messages = await session.run(graph)
        start = [kind for kind, _ in messages].index("execution_start")
        counts = [data["status"]["exec_info"]["queue_remaining"] for kind, data in messages[:start] if kind == "status"]
        assert 1 in counts, messages[:start]  # (a 0 may lead: the previous prompt's closing status)


# --- /view conversions ----------------------------------------------------------------------


@pytest.mark.parametrize(("content", "statuses"), [
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, (400, 415)),  # a PNG signature, then garbage
    (b"not an image at all", (415,)),
])
async def test_view_preview_of_a_corrupt_image_is_a_client_error(client: TestClient, folders: Folders,
                                                                 content: bytes, statuses: tuple[int, ...]) -> None:
    (folders.output_dir / "broken.png").write_bytes(content)
    for params in ({"preview": "webp;50"}, {"channel": "a"}):
        response = await client.get("/view", params={"filename": "broken.png", **params})
        assert response.status in statuses, (params, response.status, await response.text())
        assert "error" in await response.json()


@pytest.mark.parametrize("preview", ["webp;1000", "webp;-3", "webp;abc", "webp;\u00b2", "webp;", "jpeg;0", "bogus"])
async def test_view_preview_quality_is_clamped_and_garbage_ignored(client: TestClient, folders: Folders,
                                                                   preview: str) -> None:
    (folders.output_dir / "a.png").write_bytes(_png())
    response = await client.get("/view", params={"filename": "a.png", "preview": preview})
    assert response.status == 200, await response.text()
    expected = "image/jpeg" if preview.startswith("jpeg") else "image/webp"
    assert response.headers["Content-Type"] == expected
    Image.open(io.BytesIO(await response.read())).load()


async def test_view_preview_content_disposition_is_escaped(client: TestClient, folders: Folders) -> None:
    name = 'we"ird;name.png'
    (folders.output_dir / name).write_bytes(_png())
    response = await client.get("/view", params={"filename": name, "preview": "webp;80"})
    assert response.status == 200
    assert response.headers["Content-Disposition"] == content_disposition("inline", 'we"ird;name.webp')
    assert '"ird' not in response.headers["Content-Disposition"]


# --- upload names ---------------------------------------------------------------------------


async def test_upload_name_keeps_its_folder_part(client: TestClient, folders: Folders) -> None:
    first = await (await _upload(client, _png(), "a/b.png")).json()
    assert first == {"name": "a/b.png", "subfolder": "", "type": "input"}
    assert (folders.input_dir / "a" / "b.png").is_file()
    renamed = await (await _upload(client, _png(6, 6), "a/b.png")).json()
    assert renamed["name"] == "a/b (1).png" and (folders.input_dir / "a" / "b (1).png").is_file()
    same = await (await _upload(client, _png(), "a/b.png")).json()
    assert same["name"] == "a/b.png"  # identical content is reused, not renamed


async def test_upload_name_is_relative_to_the_subfolder(client: TestClient, folders: Folders) -> None:
    body = await (await _upload(client, _png(), "c/d.png", subfolder="s")).json()
    assert body == {"name": "c/d.png", "subfolder": "s", "type": "input"}
    assert (folders.input_dir / "s" / "c" / "d.png").is_file()
    again = await (await _upload(client, _png(6, 6), "c/d.png", subfolder="s")).json()
    assert again == {"name": "c/d (1).png", "subfolder": "s", "type": "input"}
    escaping = await _upload(client, _png(), "../e.png", subfolder="s")
    assert escaping.status == 403
    assert not (folders.input_dir / "e.png").exists()


async def test_uploaded_name_loads_through_load_image(session: Session, client: TestClient) -> None:
    body = await (await _upload(client, _png(5, 3), "nested/pic.png")).json()
    graph = {"1": {"class_type": "LoadImage", "inputs": {"image": body["name"]}},
             "2": {"class_type": "StubOutput", "inputs": {"value": ["1", 0]}}}
    _, messages = await session.run(graph)
    executed = next(data for kind, data in messages if kind == "executed")
    assert executed["output"]["values"] == [[1, 3, 5, 3]]


# --- one feature-flag map -------------------------------------------------------------------


async def test_features_route_and_websocket_reply_are_the_same_map(client: TestClient) -> None:
    expected = server_features(client.app[SECURITY].max_upload_size)
    assert await (await client.get("/features")).json() == expected
    assert await (await client.get("/api/features")).json() == expected
    socket = await client.ws_connect("/ws?clientId=flags")
    await socket.receive()
    await socket.send_json({"type": "feature_flags", "data": {}})
    reply = (await socket.receive(timeout=5)).json()
    assert reply == {"type": "feature_flags", "data": expected}
    await socket.close()


# --- the hub keeps its close tasks alive ----------------------------------------------------


class _NeverClosingSocket:
    """A socket whose close() waits on a future nothing else references, as a stuck peer would."""

    task: weakref.ref[asyncio.Task[Any]] | None = None

    async def close(self, **_: Any) -> bool:
        current = asyncio.current_task()
        assert current is not None
        self.task = weakref.ref(current)
        await asyncio.get_running_loop().create_future()
        return True


async def test_dropping_a_client_keeps_its_close_task_referenced() -> None:
    hub = SocketHub({}, lambda: [], lambda: 0)
    socket = _NeverClosingSocket()
    client = _Client("stuck", socket)  # type: ignore[arg-type]
    hub._clients["stuck"] = client
    hub._drop(client)
    await asyncio.sleep(0)  # the close starts and parks on its future
    assert socket.task is not None
    gc.collect()  # the loop holds tasks only weakly: an unreferenced close would vanish here
    task = socket.task()
    assert task is not None and not task.done()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert len(hub) == 0


# --- GET /jobs/{prompt_id} ------------------------------------------------------------------


def _spin_graph(steps: int) -> dict:
    return {"1": {"class_type": "StubImage", "inputs": {"content": "WHITE", "height": 2, "width": 2,
                                                        "batch_size": 1}},
            "2": {"class_type": "StubSpin", "inputs": {"value": ["1", 0], "steps": steps}},
            "3": {"class_type": "StubOutput", "inputs": {"value": ["2", 0]}}}


async def _job_status(client: TestClient, prompt_id: str, prefix: str = "") -> str:
    response = await client.get(f"{prefix}/jobs/{prompt_id}")
    body = await response.json()
    assert body["id"] == prompt_id
    # `status` is ComfyUI's job status (server/jobs.py); `state` keeps Flowmill's finer one.
    assert response.status == (404 if body["state"] == "not_found" else 200)
    return body["state"]


async def _post(client: TestClient, graph: dict) -> str:
    response = await client.post("/prompt", json={"prompt": graph})
    assert response.status == 200
    return (await response.json())["prompt_id"]


async def test_jobs_route_reports_every_state(client: TestClient) -> None:
    running = await _post(client, _spin_graph(3000))
    pending = await _post(client, _spin_graph(1))
    await _eventually(lambda: _is(client, running, "running"))
    assert await _job_status(client, pending) == "pending"
    await client.post(f"/jobs/{pending}/cancel")
    assert await _job_status(client, pending, "/api") == "cancelled"
    await client.post("/interrupt", json={"prompt_id": running})
    await _eventually(lambda: _is(client, running, "interrupted"))
    succeeded = await _post(client, _spin_graph(1))
    await _eventually(lambda: _is(client, succeeded, "success"))
    failing = _spin_graph(1)
    failing["2"] = {"class_type": "StubFail", "inputs": {"value": ["1", 0], "message": "kaput"}}
    failed = await _post(client, failing)
    await _eventually(lambda: _is(client, failed, "error"))
    assert await _job_status(client, "never-submitted", "/api") == "not_found"


async def _is(client: TestClient, prompt_id: str, state: str) -> bool:
    return await _job_status(client, prompt_id) == state

