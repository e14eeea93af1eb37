"""ComfyUI's routes and websocket protocol, through the aiohttp test client."""

from __future__ import annotations

import io
import json
import struct
import zlib
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from PIL import Image

from engine.paths import Folders
from tests.api.conftest import MINIMAL_CANVAS, Session


def image_graph(color: int = 0xFF0000, prefix: str = "test") -> dict:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


def types_of(messages: list[tuple[str, dict]]) -> list[str]:
    return [kind for kind, _ in messages]


@pytest.mark.parametrize("prefix", ["", "/api"])
async def test_object_info_has_comfyui_shape(client: TestClient, prefix: str) -> None:
    info = await (await client.get(f"{prefix}/object_info")).json()
    save = info["SaveImage"]
    assert save["input"]["required"]["images"][0] == "IMAGE"
    assert save["input"]["required"]["filename_prefix"][0] == "STRING"
    assert save["output_node"] is True and save["output"] == []
    assert info["EmptyImage"]["input_order"]["required"] == ["width", "height", "batch_size", "color"]
    load = info["LoadImage"]
    assert isinstance(load["input"]["required"]["image"][0], list)
    assert load["output_name"] == ["IMAGE", "MASK"]
    single = await (await client.get(f"{prefix}/object_info/ImageInvert")).json()
    assert set(single) == {"ImageInvert"} and single["ImageInvert"]["category"]


async def test_websocket_sequence_and_history_for_a_run(session: Session, client: TestClient) -> None:
    prompt_id, messages = await session.run(image_graph())
    kinds = types_of(messages)
    assert kinds.index("execution_start") < kinds.index("execution_cached") < kinds.index("executing")
    assert kinds[-2:] == ["execution_success", "executing"]
    executing = [data["node"] for kind, data in messages if kind == "executing"]
    assert executing[:-1] == ["1", "2", "3"] and executing[-1] is None
    executed = next(data for kind, data in messages if kind == "executed")
    image = executed["output"]["images"][0]
    assert executed["node"] == "3" and image["type"] == "output"
    history = await (await client.get(f"/history/{prompt_id}")).json()
    entry = history[prompt_id]
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert entry["outputs"]["3"]["images"][0] == image
    assert entry["prompt"][1] == prompt_id and entry["prompt"][4] == ["3"]
    view = await client.get("/view", params={"filename": image["filename"], "subfolder": image["subfolder"],
                                             "type": "output"})
    assert view.status == 200 and view.headers["X-Content-Type-Options"] == "nosniff"
    decoded = Image.open(io.BytesIO(await view.read()))
    assert decoded.getpixel((0, 0))[:3] == (0, 255, 255)
    assert "prompt" in decoded.text


async def test_requeue_is_fully_cached_and_resends_executed(session: Session) -> None:
    await session.run(image_graph())
    _, messages = await session.run(image_graph())
    cached = next(data for kind, data in messages if kind == "execution_cached")
    assert set(cached["nodes"]) == {"1", "2", "3"}
    assert [data["node"] for kind, data in messages if kind == "executing"] == [None]
    assert any(kind == "executed" and data["node"] == "3" for kind, data in messages)


async def test_changed_widget_reruns_only_dependents(session: Session) -> None:
    await session.run(image_graph())
    graph = image_graph()
    graph["2b"] = {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}}
    graph["4"] = {"class_type": "PreviewImage", "inputs": {"images": ["2b", 0]}}
    graph["3"]["inputs"]["filename_prefix"] = "renamed"
    _, messages = await session.run(graph)
    ran = [data["node"] for kind, data in messages if kind == "executing" and data["node"]]
    assert sorted(ran) == ["2b", "3", "4"]


async def test_progress_goes_only_to_the_submitting_client(session: Session, client: TestClient) -> None:
    other = await client.ws_connect("/ws?clientId=someone-else")
    await other.receive()
    graph = {"1": {"class_type": "StubImage", "inputs": {"content": "WHITE", "height": 2, "width": 2,
                                                         "batch_size": 1}},
             "2": {"class_type": "StubSpin", "inputs": {"value": ["1", 0], "steps": 5}},
             "3": {"class_type": "StubOutput", "inputs": {"value": ["2", 0]}}}
    _, messages = await session.run(graph)
    assert "progress" in types_of(messages) and "progress_state" in types_of(messages)
    seen: list[str] = []
    while True:
        try:
            frame = await other.receive(timeout=0.5)
        except TimeoutError:
            break
        seen.append(frame.json()["type"])
    assert set(seen) <= {"status"}, seen
    await other.close()


async def test_validation_errors_use_comfyui_shapes(client: TestClient) -> None:
    response = await client.post("/prompt", json={})
    assert response.status == 400 and (await response.json())["error"]["type"] == "no_prompt"
    response = await client.post("/prompt", json={"prompt": {"1": {"class_type": "Nope", "inputs": {}}}})
    assert (await response.json())["error"]["type"] == "missing_node_type"
    bad = image_graph()
    bad["1"]["inputs"]["width"] = 10**9
    bad["2"]["inputs"]["image"] = ["1", 5]  # a slot node 1 does not have
    body = await (await client.post("/prompt", json={"prompt": bad})).json()
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    kinds = {error["type"] for entry in body["node_errors"].values() for error in entry["errors"]}
    assert kinds == {"value_bigger_than_max", "bad_linked_input"}
    assert body["node_errors"]["1"]["errors"][0]["extra_info"]["input_name"] == "width"
    assert body["node_errors"]["1"]["dependent_outputs"] == ["3"]
    queue = await (await client.get("/queue")).json()
    assert queue == {"queue_running": [], "queue_pending": []}


async def test_type_mismatch_and_cycle_are_rejected(client: TestClient) -> None:
    mismatch = image_graph()
    mismatch["4"] = {"class_type": "PrimitiveInt", "inputs": {"value": 3}}
    mismatch["2"]["inputs"]["image"] = ["4", 0]
    body = await (await client.post("/prompt", json={"prompt": mismatch})).json()
    error = body["node_errors"]["2"]["errors"][0]
    assert error["type"] == "return_type_mismatch" and error["extra_info"]["received_type"] == "INT"
    cycle = image_graph()
    cycle["1"] = {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}}
    body = await (await client.post("/prompt", json={"prompt": cycle})).json()
    assert {error["type"] for error in body["node_errors"]["1"]["errors"]} == {"dependency_cycle"}


async def test_invalid_output_is_dropped_while_valid_ones_run(session: Session) -> None:
    graph = image_graph()
    graph["4"] = {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}}  # missing filename_prefix
    response = await session.client.post("/prompt", json={"prompt": graph, "client_id": session.client_id})
    body = await response.json()
    assert response.status == 200 and "4" in body["node_errors"]
    messages = await session.messages_until_done(body["prompt_id"])
    assert [data["node"] for kind, data in messages if kind == "executed"] == ["3"]


async def test_script_style_post_without_json_content_type_is_accepted(client: TestClient) -> None:
    response = await client.post("/prompt", data=json.dumps({"prompt": image_graph()}).encode(),
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 200
    assert isinstance((await response.json())["number"], int)


async def test_failing_node_reports_error_then_next_prompt_runs(session: Session, client: TestClient) -> None:
    failing = {"1": {"class_type": "StubImage", "inputs": {"content": "BLACK", "height": 2, "width": 2,
                                                           "batch_size": 1}},
               "2": {"class_type": "StubFail", "inputs": {"value": ["1", 0], "message": "kaput"}},
               "3": {"class_type": "StubOutput", "inputs": {"value": ["2", 0]}}}
    prompt_id, messages = await session.run(failing)
    error = next(data for kind, data in messages if kind == "execution_error")
    assert (error["node_id"], error["node_type"], error["exception_message"]) == ("2", "StubFail", "kaput")
    history = (await (await client.get(f"/history/{prompt_id}")).json())[prompt_id]
    assert history["status"]["status_str"] == "error"
    assert any(kind == "execution_error" for kind, _ in history["status"]["messages"])
    _, messages = await session.run(image_graph())
    assert "execution_success" in types_of(messages)


async def test_interrupt_a_running_prompt_by_id(session: Session, client: TestClient) -> None:
    graph = {"1": {"class_type": "StubImage", "inputs": {"content": "WHITE", "height": 2, "width": 2,
                                                         "batch_size": 1}},
             "2": {"class_type": "StubSpin", "inputs": {"value": ["1", 0], "steps": 3000}},
             "3": {"class_type": "StubOutput", "inputs": {"value": ["2", 0]}}}
    prompt_id = (await session.submit(graph))["prompt_id"]
    while True:
        frame = (await session.socket.receive(timeout=10)).json()
        if frame["type"] == "progress":
            break
    assert (await client.post("/interrupt", json={"prompt_id": "not-running"})).status == 200
    await client.post("/interrupt", json={"prompt_id": prompt_id})
    messages = await session.messages_until_done(prompt_id)
    interrupted = next(data for kind, data in messages if kind == "execution_interrupted")
    assert interrupted["node_id"] == "2"
    cancel = await (await client.post(f"/api/jobs/{prompt_id}/cancel")).json()
    assert cancel == {"cancelled": False}


async def test_queue_listing_delete_and_clear(client: TestClient) -> None:
    graph = {"1": {"class_type": "StubImage", "inputs": {"content": "WHITE", "height": 2, "width": 2,
                                                         "batch_size": 1}},
             "2": {"class_type": "StubSpin", "inputs": {"value": ["1", 0], "steps": 300}},
             "3": {"class_type": "StubOutput", "inputs": {"value": ["2", 0]}}}
    ids = [(await (await client.post("/prompt", json={"prompt": graph})).json())["prompt_id"] for _ in range(3)]
    queue = await (await client.get("/queue")).json()
    listed = [item[1] for item in queue["queue_running"] + queue["queue_pending"]]
    assert sorted(listed) == sorted(ids)
    await client.post("/queue", json={"delete": [ids[2]]})
    await client.post("/queue", json={"clear": True})
    await client.post("/interrupt", json={})
    for _ in range(100):
        queue = await (await client.get("/queue")).json()
        if not queue["queue_running"] and not queue["queue_pending"]:
            break
        import asyncio

        await asyncio.sleep(0.05)
    assert queue == {"queue_running": [], "queue_pending": []}
    assert (await (await client.get("/prompt")).json()) == {"exec_info": {"queue_remaining": 0}}


def _png_bytes(width: int = 4, height: int = 4, mode: str = "RGBA") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), (10, 20, 30, 128) if mode == "RGBA" else (10, 20, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def _bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + \
        chunk(b"IEND", b"")


async def _upload(client: TestClient, data: bytes, name: str, **fields: str) -> Any:
    form = FormData()
    form.add_field("image", data, filename=name, content_type="image/png")
    for key, value in fields.items():
        form.add_field(key, value)
    return await client.post("/upload/image", data=form)


async def test_upload_then_load_image_through_a_prompt(session: Session, client: TestClient,
                                                       folders: Folders) -> None:
    response = await _upload(client, _png_bytes(), "photo.png")
    assert await response.json() == {"name": "photo.png", "subfolder": "", "type": "input"}
    again = await (await _upload(client, _png_bytes(6, 6), "photo.png")).json()
    assert again["name"] == "photo (1).png"
    graph = {"1": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
             "2": {"class_type": "StubOutput", "inputs": {"value": ["1", 1]}}}
    _, messages = await session.run(graph)
    executed = next(data for kind, data in messages if kind == "executed")
    assert executed["output"]["values"] == [[1, 4, 4]]
    info = await (await client.get("/object_info/LoadImage")).json()
    assert "photo.png" in info["LoadImage"]["input"]["required"]["image"][0]


async def test_upload_mask_merges_alpha_into_the_original(client: TestClient, folders: Folders) -> None:
    await _upload(client, _png_bytes(mode="RGB"), "base.png")
    form = FormData()
    form.add_field("image", _png_bytes(), filename="mask.png", content_type="image/png")
    form.add_field("original_ref", '{"filename": "base.png", "subfolder": "", "type": "input"}')
    body = await (await client.post("/upload/mask", data=form)).json()
    merged = Image.open(folders.input_dir / body["name"])
    assert merged.mode == "RGBA" and merged.getpixel((0, 0)) == (10, 20, 30, 128)


async def test_upload_limits(client: TestClient, folders: Folders) -> None:
    bomb = await _upload(client, _bomb_png(), "bomb.png")
    assert bomb.status in (400, 415)
    svg = await _upload(client, b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", "x.svg")
    assert svg.status == 415
    escape = await _upload(client, _png_bytes(), "ok.png", subfolder="../../outside")
    assert escape.status in (400, 403)
    assert sorted(path.name for path in folders.input_dir.iterdir()) == []


async def test_view_serves_dangerous_types_as_downloads(client: TestClient, folders: Folders) -> None:
    (folders.output_dir / "x.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'></svg>")
    response = await client.get("/view", params={"filename": "x.svg", "type": "output"},
                                headers={"Sec-Fetch-Dest": "document"})
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Disposition"].startswith("attachment")
    missing = await client.get("/view", params={"filename": "nope.png"})
    assert missing.status == 404


async def test_view_preview_and_channel(client: TestClient, folders: Folders) -> None:
    (folders.output_dir / "a.png").write_bytes(_png_bytes())
    webp = await client.get("/view", params={"filename": "a.png", "preview": "webp;50"})
    assert webp.headers["Content-Type"] == "image/webp"
    alpha = Image.open(io.BytesIO(await (await client.get("/view", params={"filename": "a.png",
                                                                            "channel": "a"})).read()))
    assert alpha.mode == "L" and alpha.getpixel((0, 0)) == 128


async def test_info_routes(client: TestClient, folders: Folders) -> None:
    stats = await (await client.get("/system_stats")).json()
    assert stats["system"]["argv"] == [] and stats["devices"][0]["type"] == "cpu"
    assert "checkpoints" in await (await client.get("/models")).json()
    (folders.models_dir / "checkpoints").mkdir(parents=True)
    (folders.models_dir / "checkpoints" / "tiny.safetensors").write_bytes(b"x")
    assert await (await client.get("/api/models/checkpoints")).json() == ["tiny.safetensors"]
    assert (await client.get("/models/../../etc")).status == 404
    assert await (await client.get("/embeddings")).json() == []
    assert isinstance(await (await client.get("/extensions")).json(), list)
    features = await (await client.get("/features")).json()
    assert features["supports_preview_metadata"] is True
    assert (await client.post("/free", json={"free_memory": True})).status == 200
    index = await client.get("/")
    assert index.status == 200 and "Flowmill" in await index.text()


async def test_history_paging_and_clear(session: Session, client: TestClient) -> None:
    ids = []
    for color in (1, 2, 3):
        prompt_id, _ = await session.run(image_graph(color))
        ids.append(prompt_id)
    assert list(await (await client.get("/history", params={"max_items": "2"})).json()) == ids[1:]
    await client.post("/history", json={"delete": [ids[0]]})
    assert list(await (await client.get("/history")).json()) == ids[1:]
    await client.post("/history", json={"clear": True})
    assert await (await client.get("/history")).json() == {}


async def test_ui_workflow_can_be_posted_directly(session: Session) -> None:
    _, messages = await session.run(MINIMAL_CANVAS)
    assert "execution_success" in types_of(messages)


async def test_feature_flags_handshake(client: TestClient) -> None:
    socket = await client.ws_connect("/ws?clientId=flags")
    await socket.receive()
    await socket.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
    reply = (await socket.receive(timeout=5)).json()
    assert reply["type"] == "feature_flags" and reply["data"]["supports_preview_metadata"] is True
    await socket.close()


async def test_deeply_nested_json_is_a_clean_400(client: TestClient) -> None:
    response = await client.post("/prompt", data=b"[" * 100_000 + b"]" * 100_000,
                                 headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert (await (await client.get("/prompt")).json()) == {"exec_info": {"queue_remaining": 0}}


async def test_previews_arrive_as_binary_frames_in_both_formats(session: Session, client: TestClient) -> None:
    graph = {"1": {"class_type": "StubImage", "inputs": {"content": "WHITE", "height": 2, "width": 2,
                                                         "batch_size": 1}},
             "2": {"class_type": "StubPreview", "inputs": {"value": ["1", 0]}},
             "3": {"class_type": "StubOutput", "inputs": {"value": ["2", 0]}}}
    _, messages = await session.run(graph)
    frame = next(data["bytes"] for kind, data in messages if kind == "<binary>")
    event_type, image_format = struct.unpack(">II", frame[:8])
    assert (event_type, image_format) == (1, 1)
    assert Image.open(io.BytesIO(frame[8:])).getpixel((8, 8))[0] > 200
    await session.socket.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
    graph["2"]["inputs"]["value"] = ["1", 0]
    graph["1"]["inputs"]["content"] = "BLACK"  # a change, so the preview node runs again
    prompt_id, messages = await session.run(graph)
    frame = next(data["bytes"] for kind, data in messages if kind == "<binary>")
    event_type, length = struct.unpack(">II", frame[:8])
    metadata = json.loads(frame[8:8 + length])
    assert event_type == 4 and metadata["node_id"] == "2" and metadata["prompt_id"] == prompt_id
    assert Image.open(io.BytesIO(frame[8 + length:])).size == (16, 16)


@pytest.mark.parametrize("body", [
    {"prompt": image_graph(), "extra_data": "abc"},
    {"prompt": image_graph(), "partial_execution_targets": 5},
    {"prompt": {"1": {"class_type": ["EmptyImage"], "inputs": {}}}},
    {"prompt": {"1": {"class_type": "Nope", "_meta": "title"}}},
    {"prompt": {"3": {"class_type": "SaveImage", "inputs": "not an object"}}},
])
async def test_malformed_bodies_are_400_not_500(client: TestClient, body: dict) -> None:
    response = await client.post("/prompt", json=body)
    assert response.status == 400
    assert "error" in await response.json()
