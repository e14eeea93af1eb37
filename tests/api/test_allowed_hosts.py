"""Remote use that works (issue 13 §1): `--allowed-hosts` for reverse proxies, and a wildcard bind
that answers under the machine's own addresses, while DNS-rebinding names stay refused.

Loopback only: the servers bind 127.0.0.1 and the tests send the Host a proxy or a LAN browser
would send; the wildcard policy is checked on an app configured for 0.0.0.0 but served by the
test client on loopback.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from server.addresses import is_loopback_address, machine_addresses
from tests.api.conftest import MINIMAL_CANVAS
from tests.api.server_process import ServerProcess

TOKEN = "proxy-test-token-0123456789abcdef"
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _send(server: ServerProcess, path: str, headers: dict[str, str], body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.url + path, data=data, headers=headers)
    try:
        with OPENER.open(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A token-protected server behind a (simulated) reverse proxy named flowmill.example."""
    server = ServerProcess(tmp_path_factory.mktemp("proxied"), token=TOKEN,
                           extra_args=["--allowed-hosts", "flowmill.example,  proxy.internal:8443"]).start()
    yield server
    server.stop()


def test_a_reverse_proxy_with_the_token_is_served(proxied: ServerProcess) -> None:
    headers = {"Host": "flowmill.example", "Authorization": f"Bearer {TOKEN}",
               "Origin": "https://flowmill.example", "Content-Type": "application/json",
               "Sec-Fetch-Site": "same-origin"}
    status, body = _send(proxied, "/prompt", headers, {"prompt": MINIMAL_CANVAS})
    assert status == 200, body
    assert _send(proxied, "/queue", {"Host": "proxy.internal:8443", "Authorization": f"Bearer {TOKEN}"})[0] == 200


def test_the_proxy_name_still_needs_the_token(proxied: ServerProcess) -> None:
    status, body = _send(proxied, "/queue", {"Host": "flowmill.example"})
    assert status == 401, body


def test_names_not_allowed_are_refused_and_the_answer_says_how_to_allow_them(proxied: ServerProcess) -> None:
    status, body = _send(proxied, "/queue", {"Host": "rebind.attacker.example", "Authorization": f"Bearer {TOKEN}"})
    assert status == 403
    assert "--allowed-hosts" in body["error"] and "rebind.attacker.example" in body["error"]


def test_without_the_flag_the_proxy_name_is_refused(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, token=TOKEN).start()
    try:
        status, _ = _send(server, "/queue", {"Host": "flowmill.example", "Authorization": f"Bearer {TOKEN}"})
        assert status == 403
        status, _ = _send(server, "/queue", {"Host": f"127.0.0.2:{server.port}", "Authorization": f"Bearer {TOKEN}"})
        assert status == 200  # any 127.0.0.0/8 address is this machine
    finally:
        server.stop()


def _lan_address() -> str:
    candidates = sorted(address for address in machine_addresses() if not is_loopback_address(address))
    if not candidates:
        pytest.skip("this machine has no non-loopback interface address")
    address = candidates[0]
    return f"[{address}]" if ":" in address else address


@pytest.mark.parametrize("auth", [{"insecure_no_auth": True}, {"token": TOKEN}], ids=["insecure-no-auth", "token"])
async def test_a_wildcard_bind_answers_under_the_machines_own_addresses(
        aiohttp_client: Any, make_app: Callable[..., Any], auth: dict[str, Any]) -> None:
    client = await aiohttp_client(make_app(listen=["0.0.0.0"], **auth))
    credentials = {"Authorization": f"Bearer {TOKEN}"} if "token" in auth else {}
    lan = _lan_address()
    response = await client.get("/queue", headers={"Host": f"{lan}:8188", **credentials})
    assert response.status == 200, await response.text()
    response = await client.get("/queue", headers={"Host": "rebind.attacker.example:8188", **credentials})
    assert response.status == 403  # a DNS-rebinding name is still refused


async def test_without_a_token_only_this_machines_addresses_are_accepted(
        aiohttp_client: Any, make_app: Callable[..., Any]) -> None:
    """An IP literal cannot be rebound, so with a token any is fine (NAT, containers); without one,
    only this machine's own addresses are."""
    foreign = "203.0.113.7"  # TEST-NET-3: never an interface address
    insecure = await aiohttp_client(make_app(listen=["0.0.0.0"], insecure_no_auth=True))
    assert (await insecure.get("/queue", headers={"Host": foreign})).status == 403
    with_token = await aiohttp_client(make_app(listen=["0.0.0.0"], token=TOKEN))
    response = await with_token.get("/queue", headers={"Host": foreign, "Authorization": f"Bearer {TOKEN}"})
    assert response.status == 200
