"""The script client (`server/client.py`) following a prompt, against a scripted websocket."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pytest

import server.client
from server.client import ComfyClient
from server.security import TOKEN_SUBPROTOCOL_PREFIX

PROMPT_ID = "p1"
QUIET = None  # a pause in the script: recv times out once


class ScriptedSocket:
    """Plays back messages; QUIET entries raise the TimeoutError a silent server causes."""

    def __init__(self, script: Iterable[tuple[str, dict[str, Any]] | None]) -> None:
        self._script = list(script)

    def recv(self, timeout: float | None = None) -> str:
        if not self._script:
            raise AssertionError("the client read past the end of the script")
        entry = self._script.pop(0)
        if entry is QUIET:
            raise TimeoutError
        kind, data = entry
        return json.dumps({"type": kind, "data": {"prompt_id": PROMPT_ID, **data}})


def _client(script: Iterable[tuple[str, dict[str, Any]] | None]) -> ComfyClient:
    client = ComfyClient("http://127.0.0.1:1")
    client._socket = ScriptedSocket(script)  # type: ignore[assignment]
    return client


def _blocked(node: str) -> tuple[str, dict[str, Any]]:
    return ("execution_error", {"node_id": node, "node_type": "Blocker", "executed": [],
                                "exception_message": "Execution Blocked: no", "exception_type": "ExecutionBlocked",
                                "traceback": [], "current_inputs": {}, "current_outputs": {}})


def test_a_message_carrying_blocker_does_not_end_the_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server.client, "_FAILURE_GRACE_S", 0.0)  # a grace period would run out at once
    client = _client([
        ("execution_start", {}),
        ("executing", {"node": "1"}),
        _blocked("1"),
        QUIET,  # the rest of the prompt takes a while
        ("executing", {"node": "2"}),
        ("executed", {"node": "2", "output": {"values": [1]}}),
        ("execution_success", {}),
        ("executing", {"node": None}),
    ])
    outcome = client.follow(PROMPT_ID)
    assert outcome.status == "success" and outcome.failure is None
    assert outcome.executed == ["1", "2"] and outcome.outputs == {"2": {"values": [1]}}
    assert [entry["node_id"] for entry in outcome.blocked] == ["1"]


def test_a_real_error_still_gives_up_after_the_grace_period(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server.client, "_FAILURE_GRACE_S", 0.0)
    failure = ("execution_error", {"node_id": "1", "node_type": "Fail", "exception_message": "kaput",
                                   "exception_type": "ValueError"})
    outcome = _client([("executing", {"node": "1"}), failure, QUIET]).follow(PROMPT_ID)
    assert outcome.status == "error" and outcome.failure is not None
    assert outcome.failure["exception_message"] == "kaput"


@pytest.mark.parametrize(("server", "loopback"), [
    ("http://127.0.0.1:8188", True),
    ("http://localhost:8188", True),
    ("http://localhost.:8188", True),  # the root-dot form the server's own rule accepts
    ("http://[::1]:8188", True),
    ("http://[::ffff:127.0.0.1]:8188", True),  # IPv4-mapped loopback
    ("http://192.168.1.5:8188", False),
    ("http://example.com", False),
])
def test_client_uses_the_servers_loopback_rule(server: str, loopback: bool) -> None:
    assert ComfyClient(server).loopback is loopback


def test_client_sends_the_servers_token_subprotocol(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_connect(url: str, **options: Any) -> ScriptedSocket:
        seen.update(options)
        return ScriptedSocket([("status", {})])

    monkeypatch.setattr(server.client, "connect", fake_connect)
    ComfyClient("http://127.0.0.1:1", token="s3cret").connect()
    assert seen["subprotocols"] == [f"{TOKEN_SUBPROTOCOL_PREFIX}s3cret"]
