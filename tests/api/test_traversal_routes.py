"""The traversal corpus against the real routes and a graph input (LoadImage via POST /prompt).

tests/unit/test_path_traversal.py checks `resolve_under` itself; this checks that every way a
path reaches the server goes through it: each payload must fail cleanly (4xx or a validation
error naming the node and input), never return the sentinel's bytes, and never create a file
outside the roots.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData
from PIL import Image

from engine.paths import PathEscapeError, UnsafePathError, resolve_under
from engine.runtime import Runtime
from server.app import create_app
from server.security import SecurityConfig
from tests.api.conftest import build_runtime
from tests.unit.test_path_traversal import CORPUS, SENTINEL_BYTES, Layout, build_layout

PAYLOADS = [str(param.values[0]) for param in CORPUS]


@pytest.fixture
async def attack(aiohttp_client: Any, tmp_path: Path) -> tuple[Any, Layout]:
    layout = build_layout(tmp_path / "site")
    runtime: Runtime = build_runtime(layout.folders)
    app = create_app(runtime, SecurityConfig(), db_path=tmp_path / "queue.sqlite3")
    return await aiohttp_client(app), layout


def _snapshot(folder: Path) -> set[str]:
    return {str(path) for path in folder.rglob("*")}


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2)).save(buffer, "PNG")
    return buffer.getvalue()


async def test_view_refuses_every_payload_as_filename_and_subfolder(attack: tuple[Any, Layout]) -> None:
    client, layout = attack
    failures = []
    for payload in PAYLOADS:
        for params in ({"filename": payload, "type": "input"},
                       {"filename": "sentinel.txt", "subfolder": payload, "type": "output"},
                       {"filename": payload, "type": payload}):
            response = await client.get("/view", params=params)
            body = await response.read()
            if response.status not in (400, 403, 404) or SENTINEL_BYTES in body:
                failures.append((params, response.status))
    assert not failures, failures


async def test_upload_refuses_every_payload_and_writes_nothing_outside(attack: tuple[Any, Layout]) -> None:
    client, layout = attack
    before = _snapshot(layout.outside)
    failures = []
    for payload in PAYLOADS:
        for field in ("subfolder", "filename"):
            form = FormData()
            name = payload if field == "filename" else "ok.png"
            try:  # the client itself refuses control characters in a multipart header
                form.add_field("image", _png(), filename=name or "x", content_type="image/png")
            except ValueError:
                continue
            if field == "subfolder":
                form.add_field("subfolder", payload)
            try:
                response = await client.post("/upload/image", data=form)
            except (ValueError, TypeError):  # unencodable on the wire (lone surrogates): nothing was sent
                continue
            if response.status >= 500:
                failures.append((field, payload, response.status))
            elif response.status == 200:
                stored = await response.json()
                root = layout.folders.input_dir.resolve()
                target = (root / stored["subfolder"] / stored["name"]).resolve()
                if not target.is_relative_to(root):
                    failures.append((field, payload, "stored outside", str(target)))
    assert not failures, failures
    assert _snapshot(layout.outside) == before
    assert layout.sentinel.read_bytes() == SENTINEL_BYTES


async def test_load_image_input_refuses_every_payload(attack: tuple[Any, Layout]) -> None:
    client, layout = attack
    failures = []
    for payload in PAYLOADS:
        prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": payload}},
                  "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
        response = await client.post("/prompt", json={"prompt": prompt})
        body = await response.json()
        errors = body.get("node_errors", {}).get("1", {}).get("errors", [])
        named = any(error.get("extra_info", {}).get("input_name") == "image" or "image" in error.get("details", "")
                    for error in errors)
        if response.status != 400 or not named:
            failures.append((payload, response.status, body))
    assert not failures, failures[:3]


def test_every_route_payload_list_is_the_full_corpus() -> None:
    assert len(PAYLOADS) >= 40


# --- 403 for an escape, 400 for a malformed name: chosen by exception type -----------------------

ESCAPES = ["../sentinel.txt", "sub/../../x.png", "link_dir/sentinel.txt", "rel_up/sentinel.txt",
           "loop/../link_dir/sentinel.txt", "loop_a/x.png"]
MALFORMED = ["/etc/passwd", "a\x00.png", "leaves\x01.png", "x.png.", "CON.png"]


@pytest.mark.parametrize("payload", ESCAPES)
def test_escapes_raise_path_escape_error(tmp_path: Path, payload: str) -> None:
    layout = build_layout(tmp_path / "site")
    with pytest.raises(PathEscapeError):
        resolve_under(layout.folders.input_dir, payload)


@pytest.mark.parametrize("payload", MALFORMED)
def test_malformed_names_are_unsafe_but_not_escapes(tmp_path: Path, payload: str) -> None:
    layout = build_layout(tmp_path / "site")
    with pytest.raises(UnsafePathError) as raised:
        resolve_under(layout.folders.input_dir, payload)
    assert not isinstance(raised.value, PathEscapeError)


async def test_view_status_follows_the_exception_type(attack: tuple[Any, Layout]) -> None:
    client, _ = attack
    for payload in ESCAPES:
        response = await client.get("/view", params={"filename": payload, "type": "input"})
        assert response.status == 403, (payload, response.status)
    # "leaves" in a malformed name's message must not turn its 400 into a 403.
    for payload in MALFORMED:
        response = await client.get("/view", params={"filename": payload, "type": "input"})
        assert response.status == 400, (payload, response.status)
