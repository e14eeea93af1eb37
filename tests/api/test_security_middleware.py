"""The security middleware, response headers, `/view` file serving and bind policy (security.md §6 checks 1-3, 5, 6).

Each test builds a small app with stub routes that count their calls, so a refused request
is shown to have never reached its handler. Everything runs on loopback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, make_mocked_request

from server import security
from server.addresses import check_bind, is_loopback_address
from server.security import (
    CONTENT_SECURITY_POLICY,
    TOKEN_COOKIE,
    RedactingAccessLogger,
    SecurityConfig,
    SecurityError,
    generate_token,
    install_response_headers,
    install_security,
    security_middleware,
    token_matches,
    token_subprotocols,
)
from server.serving import content_disposition, file_response, is_dangerous_content_type

TOKEN = "test-token-0123456789abcdef"
CALLS = web.AppKey("calls", Counter)
FILES = web.AppKey("files", Path)
GRAPH = {"prompt": {"1": {"class_type": "Stub", "inputs": {}}}}

ClientFactory = Callable[..., Awaitable[TestClient]]


# --------------------------------------------------------------------------- the test app


async def _prompt(request: web.Request) -> web.Response:
    request.app[CALLS]["prompt"] += 1
    body = await request.read()  # reading enforces the per-route client_max_size
    return web.json_response({"queued": True, "bytes": len(body)})


async def _upload(request: web.Request) -> web.Response:
    request.app[CALLS]["upload"] += 1
    body = await request.read()
    return web.json_response({"name": "x.png", "bytes": len(body)})


async def _queue(request: web.Request) -> web.Response:
    return web.json_response({"queue_pending": request.app[CALLS]["prompt"]})


async def _settings(request: web.Request) -> web.Response:
    request.app[CALLS]["settings"] += 1
    return web.json_response({})


async def _index(request: web.Request) -> web.Response:
    return web.Response(text="<!doctype html><title>Flowmill</title>", content_type="text/html")


async def _stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await response.prepare(request)
    await response.write(b"streamed")
    return response


async def _websocket(request: web.Request) -> web.WebSocketResponse:
    socket = web.WebSocketResponse(protocols=token_subprotocols(request))
    await socket.prepare(request)
    request.app[CALLS]["ws"] += 1
    await socket.send_str("hello")
    await socket.close()
    return socket


async def _view(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    return file_response(request.app[FILES] / name, name)


def make_app(config: SecurityConfig, files: Path | None = None) -> web.Application:
    app = web.Application(middlewares=[security_middleware(config)], client_max_size=config.client_max_size)
    install_response_headers(app)
    app[CALLS] = Counter()
    app[FILES] = files or Path("/nonexistent")
    for prefix in ("", "/api"):
        app.router.add_post(f"{prefix}/prompt", _prompt)
        app.router.add_post(f"{prefix}/upload/image", _upload)
        app.router.add_get(f"{prefix}/queue", _queue)
        app.router.add_put(f"{prefix}/settings/{{id}}", _settings)
        app.router.add_delete(f"{prefix}/settings/{{id}}", _settings)
        app.router.add_get(f"{prefix}/ws", _websocket)
        app.router.add_get(f"{prefix}/view/{{name}}", _view)
    app.router.add_get("/stream", _stream)
    app.router.add_get("/", _index)
    return app


@pytest.fixture
async def client(aiohttp_client: ClientFactory) -> TestClient:
    return await aiohttp_client(make_app(SecurityConfig()))


@pytest.fixture
async def token_client(aiohttp_client: ClientFactory) -> TestClient:
    return await aiohttp_client(make_app(SecurityConfig(token=TOKEN)))


def calls(client: TestClient) -> Counter:
    return client.server.app[CALLS]


def own_origin(client: TestClient) -> str:
    return f"http://127.0.0.1:{client.port}"


async def queue_length(client: TestClient, **kwargs: object) -> int:
    response = await client.get("/queue", **kwargs)
    assert response.status == 200
    return (await response.json())["queue_pending"]


# --------------------------------------------------------------------------- cross-site (check 2)


@pytest.mark.parametrize("site", ["cross-site", "Cross-Site", "CROSS-SITE", " cross-site "])
@pytest.mark.parametrize("mode", ["cors", "no-cors", "navigate", "same-origin", None])
async def test_sec_fetch_site_cross_site_is_refused(client: TestClient, site: str, mode: str | None) -> None:
    headers = {"Sec-Fetch-Site": site, "Content-Type": "application/json"}
    if mode is not None:
        headers["Sec-Fetch-Mode"] = mode
    before = await queue_length(client)
    response = await client.post("/prompt", json=GRAPH, headers=headers)
    assert response.status == 403
    assert "cross-site" in (await response.json())["error"]
    assert calls(client)["prompt"] == 0
    assert await queue_length(client) == before


@pytest.mark.parametrize("path", ["/prompt", "/api/prompt"])
@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "https://evil.example",
        "null",
        "NULL",
        "http://127.0.0.1:1",  # another local app on another port
        "http://localhost:{port}",  # a different origin from 127.0.0.1:{port}
        "http://127.0.0.1",
        "file://",
        "chrome-extension://abcdef",
        "not a url",
        "http://127.0.0.1:{port}.evil.example",
    ],
)
async def test_foreign_origin_is_refused(client: TestClient, path: str, origin: str) -> None:
    origin = origin.format(port=client.port)
    response = await client.post(path, json=GRAPH, headers={"Origin": origin})
    assert response.status == 403, origin
    assert calls(client)["prompt"] == 0


@pytest.mark.parametrize(("method", "path"), [("PUT", "/settings/a"), ("DELETE", "/api/settings/a")])
async def test_other_state_changing_methods_are_checked(client: TestClient, method: str, path: str) -> None:
    response = await client.request(method, path, headers={"Origin": "http://evil.example"})
    assert response.status == 403
    response = await client.request(method, path, headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status == 403
    assert calls(client)["settings"] == 0


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:80", "localhost.attacker.example"])
async def test_rebinding_host_is_refused(client: TestClient, host: str) -> None:
    """DNS rebinding: Host and Origin both name the attacker, so they match each other."""
    origin = f"http://{host}"
    for method, path in (("POST", "/prompt"), ("GET", "/queue"), ("GET", "/")):
        response = await client.request(method, path, json=GRAPH, headers={"Host": host, "Origin": origin})
        assert response.status == 403, (method, path)
    assert calls(client)["prompt"] == 0


async def test_same_origin_text_plain_is_refused_with_415(client: TestClient) -> None:
    before = await queue_length(client)
    response = await client.post(
        "/prompt",
        data=json.dumps(GRAPH),
        headers={"Origin": own_origin(client), "Content-Type": "text/plain"},
    )
    assert response.status == 415
    assert "application/json" in (await response.json())["error"]
    assert calls(client)["prompt"] == 0
    assert await queue_length(client) == before


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain;charset=utf-8"]
)
async def test_safelisted_types_with_only_fetch_metadata_are_refused(client: TestClient, content_type: str) -> None:
    headers = {"Sec-Fetch-Site": "same-origin", "Content-Type": content_type}
    response = await client.post("/prompt", data=json.dumps(GRAPH), headers=headers)
    assert response.status == 415
    assert calls(client)["prompt"] == 0


async def test_browser_post_without_content_type_is_refused(client: TestClient) -> None:
    response = await client.post("/prompt", headers={"Origin": own_origin(client)})
    assert response.status == 415


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"])
async def test_same_origin_json_post_passes(client: TestClient, content_type: str) -> None:
    headers = {"Origin": own_origin(client), "Sec-Fetch-Site": "same-origin", "Content-Type": content_type}
    response = await client.post("/api/prompt", data=json.dumps(GRAPH), headers=headers)
    assert response.status == 200
    assert calls(client)["prompt"] == 1
    assert await queue_length(client) == 1


async def test_same_origin_multipart_upload_passes(client: TestClient) -> None:
    form = aiohttp.FormData()
    form.add_field("image", b"\x89PNG", filename="x.png", content_type="image/png")
    response = await client.post("/api/upload/image", data=form, headers={"Origin": own_origin(client)})
    assert response.status == 200
    assert calls(client)["upload"] == 1


async def test_cross_site_upload_is_refused(client: TestClient) -> None:
    form = aiohttp.FormData()
    form.add_field("image", b"\x89PNG", filename="x.png", content_type="image/png")
    response = await client.post("/upload/image", data=form, headers={"Origin": "http://evil.example"})
    assert response.status == 403
    assert calls(client)["upload"] == 0


async def test_script_post_without_browser_markers_passes(client: TestClient) -> None:
    """ComfyUI's script examples post JSON with urllib's default form content type."""
    response = await client.post(
        "/prompt", data=json.dumps(GRAPH).encode(), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status == 200
    assert calls(client)["prompt"] == 1


async def test_real_urllib_script_client_passes(client: TestClient) -> None:
    request = urllib.request.Request(str(client.make_url("/prompt")), data=json.dumps(GRAPH).encode())

    def send() -> tuple[int, dict[str, object]]:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())

    status, body = await asyncio.to_thread(send)
    assert status == 200 and body["queued"] is True
    assert await queue_length(client) == 1


async def test_cross_site_top_level_get_of_the_index_is_allowed(client: TestClient) -> None:
    headers = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    response = await client.get("/", headers=headers)
    assert response.status == 200


# --------------------------------------------------------------------------- websocket


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Host": "attacker.example", "Origin": "http://attacker.example"},
    ],
    ids=["foreign-origin", "null-origin", "fetch-metadata", "rebinding"],
)
async def test_websocket_cross_site_upgrade_is_refused(client: TestClient, headers: dict[str, str]) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", headers=headers)
    assert refused.value.status == 403
    assert calls(client)["ws"] == 0


@pytest.mark.parametrize("with_origin", [True, False], ids=["same-origin-page", "script"])
async def test_websocket_from_own_page_or_script_connects(client: TestClient, with_origin: bool) -> None:
    headers = {"Origin": own_origin(client)} if with_origin else {}
    socket = await client.ws_connect("/api/ws", headers=headers)
    assert (await socket.receive_str()) == "hello"
    await socket.close()
    assert calls(client)["ws"] == 1


# --------------------------------------------------------------------------- Host allowlist


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:8188", "localhost.", "127.0.0.1", "127.9.9.9:1", "[::1]:80"])
async def test_loopback_hosts_are_allowed(client: TestClient, host: str) -> None:
    response = await client.get("/queue", headers={"Host": host})
    assert response.status == 200


@pytest.mark.parametrize(
    "host", ["::1", "[::1", "127.0.0.1:99999", "127.0.0.1:x", "127.1", "0x7f.0.0.1", "evil@127.0.0.1"]
)
async def test_malformed_or_odd_hosts_are_refused(client: TestClient, host: str) -> None:
    response = await client.get("/queue", headers={"Host": host})
    assert response.status == 403


async def test_configured_host_is_allowed(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(make_app(SecurityConfig(allowed_hosts=["Flowmill.LAN:8188"])))
    assert (await client.get("/queue", headers={"Host": "flowmill.lan:8188"})).status == 200
    # A configured name may also appear as Origin (e.g. a proxy that rewrites Host).
    headers = {"Origin": "https://flowmill.lan", "Content-Type": "application/json"}
    assert (await client.post("/prompt", json=GRAPH, headers=headers)).status == 200
    assert (await client.get("/queue", headers={"Host": "other.lan"})).status == 403


async def test_bound_address_is_a_valid_host_with_a_token(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(make_app(SecurityConfig(listen=["127.0.0.1", "10.1.2.3"], token=TOKEN)))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert (await client.get("/queue", headers={"Host": "10.1.2.3:8188", **auth})).status == 200
    assert (await client.get("/queue", headers={"Host": "10.9.9.9:8188", **auth})).status == 403
    assert (await client.get("/queue", headers={"Host": "attacker.example", **auth})).status == 403


async def test_wildcard_bind_with_token_accepts_ip_literals_only(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(make_app(SecurityConfig(listen=["0.0.0.0", "::"], token=TOKEN)))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert (await client.get("/queue", headers={"Host": "192.168.1.5:8188", **auth})).status == 200
    assert (await client.get("/queue", headers={"Host": "[fe80::1]:8188", **auth})).status == 200
    assert (await client.get("/queue", headers={"Host": "attacker.example:8188", **auth})).status == 403


async def test_insecure_wildcard_bind_keeps_loopback_host_rule(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(make_app(SecurityConfig(listen=["0.0.0.0"], insecure_no_auth=True)))
    assert (await client.get("/queue")).status == 200
    assert (await client.get("/queue", headers={"Host": "192.168.1.5:8188"})).status == 403


# --------------------------------------------------------------------------- token (check 3)


def _routes_to_probe(app: web.Application) -> list[tuple[str, str]]:
    probes = []
    for route in app.router.routes():
        path = route.resource.canonical if route.resource else ""
        path = path.replace("{id}", "a").replace("{name}", "x.png")
        probes.append((route.method, path))
    return probes


async def test_every_route_but_the_index_needs_the_token(token_client: TestClient) -> None:
    probes = _routes_to_probe(token_client.server.app)
    assert len(probes) >= 15
    for method, path in probes:
        response = await token_client.request(method, path)
        if (method, path) in security.PUBLIC_ROUTES:
            assert response.status == 200, (method, path)
            continue
        assert response.status == 401, (method, path)
        if method != "HEAD":
            assert "error" in await response.json()
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert sum(calls(token_client).values()) == 0


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer wrong-token-0123456789abcdef"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Cookie": f"{TOKEN_COOKIE}=nope"},
        {"Cookie": f"other={TOKEN}"},
        {"X-Token": TOKEN},
    ],
    ids=["wrong", "longer", "prefix", "basic-scheme", "no-scheme", "wrong-cookie", "other-cookie", "other-header"],
)
async def test_wrong_token_is_refused(token_client: TestClient, headers: dict[str, str]) -> None:
    response = await token_client.post("/prompt", json=GRAPH, headers=headers)
    assert response.status == 401
    assert calls(token_client)["prompt"] == 0


async def test_token_in_query_is_only_a_login_on_the_index(token_client: TestClient) -> None:
    assert (await token_client.get(f"/queue?token={TOKEN}")).status == 401
    assert (await token_client.get(f"/api/?token={TOKEN}")).status == 401


@pytest.mark.parametrize("path", ["/prompt", "/api/prompt"])
@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
async def test_bearer_token_passes(token_client: TestClient, path: str, scheme: str) -> None:
    response = await token_client.post(path, json=GRAPH, headers={"Authorization": f"{scheme} {TOKEN}"})
    assert response.status == 200
    assert calls(token_client)["prompt"] == 1


async def test_cookie_token_passes(token_client: TestClient) -> None:
    response = await token_client.get("/queue", headers={"Cookie": f"{TOKEN_COOKIE}={TOKEN}"})
    assert response.status == 200


async def test_token_does_not_bypass_cross_site_checks(token_client: TestClient) -> None:
    headers = {"Cookie": f"{TOKEN_COOKIE}={TOKEN}", "Origin": "http://evil.example"}
    response = await token_client.post("/prompt", json=GRAPH, headers=headers)
    assert response.status == 403
    assert calls(token_client)["prompt"] == 0


async def test_index_login_sets_cookie_and_redirects(token_client: TestClient) -> None:
    response = await token_client.get(f"/?token={TOKEN}", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{TOKEN_COOKIE}={TOKEN}")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    # The test client's cookie jar now carries it, as a browser would.
    assert (await token_client.get("/queue")).status == 200


async def test_index_login_with_wrong_token_is_refused(token_client: TestClient) -> None:
    response = await token_client.get("/?token=wrong", allow_redirects=False)
    assert response.status == 401
    assert "Set-Cookie" not in response.headers


async def test_websocket_needs_the_token(token_client: TestClient) -> None:
    for protocols in ((), ("flowmill.token.wrong-token-0123456789",)):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await token_client.ws_connect("/ws", protocols=protocols)
        assert refused.value.status == 401
    assert calls(token_client)["ws"] == 0


async def test_websocket_subprotocol_token_passes_and_is_echoed(token_client: TestClient) -> None:
    protocol = f"flowmill.token.{TOKEN}"
    socket = await token_client.ws_connect("/ws", protocols=("chat", protocol))
    assert socket.protocol == protocol  # a browser closes the socket unless one is selected
    assert (await socket.receive_str()) == "hello"
    await socket.close()


async def test_websocket_cookie_token_passes(token_client: TestClient) -> None:
    socket = await token_client.ws_connect("/ws", headers={"Cookie": f"{TOKEN_COOKIE}={TOKEN}"})
    assert (await socket.receive_str()) == "hello"
    await socket.close()


async def test_subprotocol_token_is_ignored_outside_websockets(token_client: TestClient) -> None:
    response = await token_client.get("/queue", headers={"Sec-WebSocket-Protocol": f"flowmill.token.{TOKEN}"})
    assert response.status == 401


def test_token_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bytes, bytes]] = []

    def spy(left: bytes, right: bytes) -> bool:
        seen.append((left, right))
        return left == right

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    assert token_matches(TOKEN, TOKEN)
    assert not token_matches("x", TOKEN)
    assert len(seen) == 2


def test_token_matches_handles_odd_text() -> None:
    assert not token_matches("\u00e9\ud800", TOKEN)
    assert not token_matches("", TOKEN)


def test_generated_tokens() -> None:
    first, second = generate_token(), generate_token()
    assert first != second
    assert len(first) >= 43
    SecurityConfig(token=first)  # accepted as a token


@pytest.mark.parametrize(
    "bad", ["", "short", "has space 0123456789", "semi;colon0123456789", "newline0123456789abc\n", 'quote"0123456789ab']
)
def test_weak_or_unsafe_tokens_are_refused(bad: str) -> None:
    with pytest.raises(SecurityError, match="token"):
        SecurityConfig(token=bad)


# --------------------------------------------------------------------------- body size (check 5)


@pytest.fixture
async def small_client(aiohttp_client: ClientFactory) -> TestClient:
    return await aiohttp_client(make_app(SecurityConfig(max_json_size=1024, max_upload_size=4096)))


async def test_oversize_json_is_refused_before_the_handler(small_client: TestClient) -> None:
    response = await small_client.post("/prompt", data=b"x" * 2048)
    assert response.status == 413
    assert "1024" in (await response.json())["error"]
    assert calls(small_client)["prompt"] == 0


async def test_upload_routes_have_the_larger_cap(small_client: TestClient) -> None:
    assert (await small_client.post("/api/upload/image", data=b"x" * 2048)).status == 200
    assert (await small_client.post("/upload/image", data=b"x" * 8192)).status == 413
    assert calls(small_client)["upload"] == 1


async def test_chunked_json_body_is_capped_while_reading(small_client: TestClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * 512

    response = await small_client.post("/api/prompt", data=chunks())
    assert response.status == 413


def test_client_max_size_recommendation() -> None:
    assert SecurityConfig(max_json_size=1024, max_upload_size=4096).client_max_size == 4096
    assert SecurityConfig().client_max_size == 100 * 1024 * 1024
    assert SecurityConfig().max_json_size == 10 * 1024 * 1024


@pytest.mark.parametrize("field", ["max_json_size", "max_upload_size"])
def test_size_limits_must_be_positive(field: str) -> None:
    with pytest.raises(SecurityError, match=field):
        SecurityConfig(**{field: 0})


# --------------------------------------------------------------------------- response headers


async def test_every_response_is_nosniff(client: TestClient, token_client: TestClient) -> None:
    replies = [
        await client.get("/queue"),
        await client.get("/"),
        await client.get("/stream"),
        await client.get("/no/such/route"),
        await client.post("/prompt", json=GRAPH, headers={"Origin": "http://evil.example"}),
        await client.post("/prompt", data="x", headers={"Origin": own_origin(client), "Content-Type": "text/plain"}),
        await token_client.get("/queue"),
    ]
    assert [reply.status for reply in replies] == [200, 200, 200, 404, 403, 415, 401]
    for reply in replies:
        assert reply.headers.get("X-Content-Type-Options") == "nosniff", reply.url


async def test_csp_on_html_only(client: TestClient) -> None:
    index = await client.get("/")
    assert index.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    queue = await client.get("/queue")
    assert "Content-Security-Policy" not in queue.headers


async def test_csp_reaches_html_file_responses(tmp_path: Path, aiohttp_client: ClientFactory) -> None:
    """The index is usually a FileResponse, prepared inside the handler: the signal must cover it."""
    page = tmp_path / "index.html"
    page.write_text("<!doctype html><title>Flowmill</title>")

    async def index(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(page, headers={"Content-Type": "text/html; charset=utf-8"})

    app = web.Application(middlewares=[security_middleware(SecurityConfig())])
    install_response_headers(app)
    app.router.add_get("/", index)
    response = await (await aiohttp_client(app)).get("/")
    assert response.status == 200
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"


async def test_websocket_handshake_is_nosniff(client: TestClient) -> None:
    socket = await client.ws_connect("/ws")
    assert socket._response.headers.get("X-Content-Type-Options") == "nosniff"
    await socket.close()


async def test_install_security_puts_the_middleware_first(aiohttp_client: ClientFactory) -> None:
    @web.middleware
    async def inner(request: web.Request, handler: security.Handler) -> web.StreamResponse:
        request.app[CALLS]["inner"] += 1
        return await handler(request)

    app = web.Application(middlewares=[inner])
    app[CALLS] = Counter()
    app.router.add_post("/prompt", _prompt)
    install_security(app, SecurityConfig())
    client = await aiohttp_client(app)
    assert (await client.post("/prompt", headers={"Origin": "http://evil.example"})).status == 403
    assert app[CALLS]["inner"] == 0  # refused before any other middleware ran
    response = await client.post("/prompt", json=GRAPH)
    assert response.status == 200
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_access_log_drops_query_strings(caplog: pytest.LogCaptureFixture) -> None:
    access = RedactingAccessLogger(logging.getLogger("flowmill.test.access"), "")
    with caplog.at_level(logging.INFO, logger="flowmill.test.access"):
        access.log(make_mocked_request("GET", f"/?token={TOKEN}"), web.Response(status=303), 0.01)
    assert "GET /" in caplog.text
    assert TOKEN not in caplog.text


# --------------------------------------------------------------------------- serving files (check 6)


FILE_BODIES = {
    "x.svg": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    "x.html": b"<script>alert(1)</script>",
    "x.xml": b"<?xml version='1.0'?><a/>",
    "x.js": b"alert(1)",
    "x.css": b"body{}",
    "x.xhtml": b"<html xmlns='http://www.w3.org/1999/xhtml'/>",
    "x.png": b"\x89PNG\r\n\x1a\n",
    "x.unknownext": b"<script>alert(1)</script>",
}


@pytest.fixture
async def file_client(aiohttp_client: ClientFactory, tmp_path: Path) -> TestClient:
    for name, body in FILE_BODIES.items():
        (tmp_path / name).write_bytes(body)
    return await aiohttp_client(make_app(SecurityConfig(), files=tmp_path))


@pytest.mark.parametrize("name", ["x.svg", "x.html", "x.xml", "x.js", "x.css", "x.xhtml", "x.unknownext"])
async def test_dangerous_files_are_downloads(file_client: TestClient, name: str) -> None:
    response = await file_client.get(f"/view/{name}", headers={"Sec-Fetch-Dest": "document"})
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert f"filename*=UTF-8''{name}" in response.headers["Content-Disposition"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" not in response.headers
    assert await response.read() == FILE_BODIES[name]


async def test_images_are_served_inline(file_client: TestClient) -> None:
    response = await file_client.get("/api/view/x.png")
    assert response.status == 200
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["Content-Disposition"].startswith("inline;")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert await response.read() == FILE_BODIES["x.png"]


async def test_renamed_download_cannot_hide_a_dangerous_type(tmp_path: Path, aiohttp_client: ClientFactory) -> None:
    (tmp_path / "x.svg").write_bytes(FILE_BODIES["x.svg"])

    async def handler(request: web.Request) -> web.StreamResponse:
        return file_response(tmp_path / "x.svg", "harmless.png")

    app = web.Application()
    app.router.add_get("/f", handler)
    response = await (await aiohttp_client(app)).get("/f")
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Content-Disposition"].startswith("attachment;")


async def test_symlink_is_not_followed(tmp_path: Path, aiohttp_client: ClientFactory) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"SECRET")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "link.png").symlink_to(secret)
    client = await aiohttp_client(make_app(SecurityConfig(), files=tmp_path / "files"))
    response = await client.get("/view/link.png")
    assert response.status == 404
    assert b"SECRET" not in await response.read()


@pytest.mark.parametrize(
    ("content_type", "dangerous"),
    [
        ("text/html", True),
        ("Text/HTML; charset=utf-8", True),
        (" text/html ;q=1", True),
        ("image/svg+xml", True),
        ("application/xhtml+xml", True),
        ("application/atom+xml", True),
        ("application/vnd.custom+XML", True),
        ("text/xml", True),
        ("application/xml", True),
        ("text/javascript", True),
        ("application/javascript; charset=utf-8", True),
        ("text/css", True),
        ("message/rfc822", True),
        ("image/png", False),
        ("image/webp", False),
        ("video/mp4", False),
        ("application/json", False),
        ("text/plain", False),
        ("", False),
        (None, False),
    ],
)
def test_dangerous_content_types(content_type: str | None, dangerous: bool) -> None:
    assert is_dangerous_content_type(content_type) is dangerous


def test_content_disposition_escapes_the_name() -> None:
    header = content_disposition("attachment", 'ümlaut "q";\r\nX-Evil: 1 100%.svg')
    assert "\r" not in header and "\n" not in header
    fallback = header.split('filename="', 1)[1].split('"', 1)[0]
    assert '"' not in fallback and ";" not in fallback and "%" not in fallback
    assert "filename*=UTF-8''%C3%BCmlaut%20%22q%22%3B%0D%0AX-Evil%3A%201%20100%25.svg" in header


def test_content_disposition_strips_directories() -> None:
    assert "filename*=UTF-8''passwd" in content_disposition("attachment", "../../etc/passwd")
    assert "filename*=UTF-8''win.ini" in content_disposition("attachment", "C:\\Windows\\win.ini")


# --------------------------------------------------------------------------- bind policy (check 1)


@pytest.mark.parametrize(
    "listen",
    [["127.0.0.1"], ["::1"], ["[::1]"], ["localhost"], ["LOCALHOST"], ["127.5.6.7"], ["127.0.0.1", "::1"]],
)
def test_loopback_binds_need_nothing(listen: list[str]) -> None:
    check_bind(listen, None, False)
    SecurityConfig(listen=listen)


@pytest.mark.parametrize(
    "listen",
    [["0.0.0.0"], ["::"], ["192.168.1.5"], ["127.0.0.1", "0.0.0.0"], [""], ["example.com"], ["128.0.0.1"]],
)
def test_exposed_binds_need_a_token_or_the_insecure_flag(listen: list[str]) -> None:
    with pytest.raises(SecurityError, match="without authentication"):
        check_bind(listen, None, False)
    with pytest.raises(SecurityError, match="without authentication"):
        SecurityConfig(listen=listen)
    check_bind(listen, TOKEN, False)
    check_bind(listen, None, True)
    SecurityConfig(listen=listen, token=TOKEN)
    SecurityConfig(listen=listen, insecure_no_auth=True)


def test_empty_token_counts_as_no_token() -> None:
    with pytest.raises(SecurityError):
        check_bind(["0.0.0.0"], "", False)


def test_comfyui_style_listen_string_is_split() -> None:
    with pytest.raises(SecurityError, match="0.0.0.0"):
        check_bind("127.0.0.1,0.0.0.0", None, False)  # type: ignore[arg-type]
    assert SecurityConfig(listen="127.0.0.1,::1").listen == ("127.0.0.1", "::1")  # type: ignore[arg-type]


def test_no_listen_address_is_an_error() -> None:
    with pytest.raises(SecurityError, match="no listen address"):
        check_bind([], None, False)


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.255.255.254", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("localhost.example.com", False),
        ("", False),
    ],
)
def test_is_loopback_address(address: str, loopback: bool) -> None:
    assert is_loopback_address(address) is loopback
