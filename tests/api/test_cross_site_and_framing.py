"""Cross-site reads and framing (issue 13 §1): `/view` refuses cross-site requests while same-origin
pages and script clients keep working; no framing; `connect-src` is the page's own origin; control
characters in logged paths are escaped; error text sent to clients hides the server's paths."""

from __future__ import annotations

import io
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from PIL import Image

from engine.paths import Folders
from server.redaction import PROJECT_DIR
from tests.api.conftest import Session
from tests.api.server_process import ServerProcess


@pytest.fixture
def picture(folders: Folders) -> str:
    Image.new("RGB", (4, 4), (200, 10, 10)).save(folders.output_dir / "secret.png")
    return "/view?filename=secret.png&type=output"


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"},  # <img src>
    {"Sec-Fetch-Site": "Cross-Site", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"},  # fetch(), any case
    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"},  # a link
], ids=["img", "fetch", "navigation"])
async def test_view_refuses_cross_site_requests(client: TestClient, picture: str, headers: dict[str, str]) -> None:
    response = await client.get(picture, headers=headers)
    assert response.status == 403
    assert "cross-site" in (await response.json())["error"]
    head = await client.head(picture, headers=headers)
    assert head.status == 403


@pytest.mark.parametrize("headers", [
    {},  # scripts and older browsers send no Fetch Metadata
    {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"},
    {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"},
    {"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"},  # typed address
], ids=["script", "same-origin", "same-site", "typed"])
async def test_view_serves_its_own_pages_and_scripts(client: TestClient, picture: str, headers: dict[str, str]) -> None:
    response = await client.get(picture, headers=headers)
    assert response.status == 200
    assert response.headers["Content-Type"] == "image/png"


async def test_a_link_from_another_site_still_opens_the_app(client: TestClient) -> None:
    response = await client.get("/", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate",
                                              "Sec-Fetch-Dest": "document"})
    assert response.status in (200, 404)  # 404 only where web/index.html is not installed
    assert response.status != 403


async def test_other_reads_refuse_cross_site_too(client: TestClient) -> None:
    for path in ("/history", "/object_info", "/queue"):
        response = await client.get(path, headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"})
        assert response.status == 403, path


async def test_no_page_may_frame_the_app_and_it_connects_only_to_itself(client: TestClient) -> None:
    page = await client.get("/")
    if page.status == 404:
        pytest.skip("web/index.html is not installed")
    policy = page.headers["Content-Security-Policy"]
    directives = {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["connect-src"] == ["'self'"]  # no ws: / wss: to any host
    for path in ("/", "/queue", "/view?filename=missing.png"):
        response = await client.get(path)
        assert response.headers["X-Frame-Options"] == "DENY", path


def test_a_crlf_in_a_url_cannot_forge_a_log_line(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path).start()
    forged = "2026-01-01 00:00:00,000 WARNING server: forged"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        for path in (f"/view%0d%0a{forged.replace(' ', '%20')}", f"/no-such%0a{forged.replace(' ', '%20')}%1b[31m"):
            with pytest.raises(urllib.error.HTTPError):
                opener.open(server.url + path, timeout=10)
    finally:
        server.stop()
    log = server.log.read_text(errors="replace")
    lines = log.splitlines()
    assert not any(line.startswith(forged) for line in lines), log[-2000:]
    assert "\\r\\n" + forged in log and "\\x1b[31m" in log  # logged, escaped, on the request's own line
    assert "\x1b" not in log


async def test_execution_errors_name_paths_relative_to_their_folders(session: Session, folders: Folders) -> None:
    secret = folders.input_dir / "private" / "photo.png"
    graph = {"1": {"class_type": "StubFail", "inputs": {"value": 1, "message": f"cannot open {secret}: no access"}},
             "2": {"class_type": "StubOutput", "inputs": {"value": ["1", 0]}}}
    _, messages = await session.run(graph)
    error = next(data for kind, data in messages if kind == "execution_error")
    assert error["exception_message"] == "cannot open input/private/photo.png: no access"
    text = repr(error)
    assert str(folders.input_dir.parent) not in text
    assert str(PROJECT_DIR) not in text  # the traceback's source files too
    assert any("<flowmill>" in line for line in error["traceback"])
    history = await (await session.client.get("/history")).json()
    recorded = repr([entry["status"] for entry in history.values()])  # the prompt itself is the client's own text
    assert "execution_error" in recorded
    assert str(folders.input_dir.parent) not in recorded and str(PROJECT_DIR) not in recorded


async def test_validation_and_file_errors_hide_server_paths(client: TestClient, folders: Folders) -> None:
    (folders.output_dir / "clash").write_bytes(b"a file where a folder is expected")
    responses: list[Any] = [
        await client.post("/prompt", json={"prompt": {"1": {"class_type": "LoadImage",
                                                            "inputs": {"image": "nowhere.png"}}}}),
        await client.get("/view?filename=x.png&subfolder=clash&type=output&preview=jpeg;90"),
        await client.get("/view?filename=../../etc/passwd"),
    ]
    broken = io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (folders.output_dir / "broken.png").write_bytes(broken.getvalue())
    responses.append(await client.get("/view?filename=broken.png&type=output&preview=jpeg;90"))
    for response in responses:
        assert 400 <= response.status < 500
        text = await response.text()
        assert str(folders.input_dir.parent) not in text and not re.search(r"/(tmp|home|root|work)/", text), text
