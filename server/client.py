"""A small client for the ComfyUI HTTP/websocket protocol, used by `main.py submit` and the benchmarks.

It speaks to any server with ComfyUI's surface (comfyui-compat.md §10-11): it opens
`/ws?clientId=<uuid4>` first, posts `{"prompt", "client_id", "prompt_id", "extra_data"}`
to `/prompt`, follows that prompt's messages until `executing` with `node: null`, then
reads `/history/{prompt_id}` and downloads the images through `/view`. An access token
travels as `Authorization: Bearer` on HTTP and as the `flowmill.token.<token>` websocket
subprotocol (the one field browsers can set, which the server accepts from scripts too).

Client side only: `websockets` for the socket and `urllib.request` for HTTP, never an
aiohttp client session, and never torch (the shared loader, overrides and progress printer
come from engine/headless.py, which imports no torch at module level). The loopback rule
(server/addresses.py) and the token subprotocol (server/security.py) are the server's own, so
client and server cannot disagree on them; neither imports torch. No module-level mutable state.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

from engine.events import (
    Event,
    EventSink,
    ExecutionFailed,
    ExecutionInterrupted,
    ExecutionStarted,
    ExecutionSucceeded,
    NodeFinished,
    NodeProgress,
    NodesCached,
    NodeStarted,
    discard_events,
)
from server.addresses import is_loopback_address
from server.security import TOKEN_SUBPROTOCOL_PREFIX

_MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # execution_cached for a 10,000-node graph is ~100 kB; previews more
_FAILURE_GRACE_S = 10.0  # after execution_error, how long to wait for the closing `executing null`
# An ExecutionBlocker with a message is reported as `execution_error` with this type, and the
# prompt carries on: it is not a failure of the prompt.
BLOCKED_EXCEPTION_TYPE = "ExecutionBlocked"


class ClientError(Exception):
    """The server could not be reached or answered something unexpected."""


class PromptRejected(ClientError):
    """`POST /prompt` answered 4xx; `body` is the parsed JSON (ComfyUI's error shape) or the text."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"the server rejected the prompt (HTTP {status})")
        self.status = status
        self.body = body


@dataclass
class RunOutcome:
    """What following one prompt saw: its end state, the nodes that ran or were cached, the time."""

    prompt_id: str
    status: str = "unknown"  # success | error | interrupted
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)  # node id -> `executed` output
    failure: dict[str, Any] | None = None
    blocked: list[dict[str, Any]] = field(default_factory=list)  # ExecutionBlocker messages (not failures)
    elapsed_s: float = 0.0  # from just before POST /prompt to `executing {node: null}`
    messages: int = 0


def message_to_event(kind: str, data: Mapping[str, Any]) -> Event | None:
    """The engine event a websocket message stands for, so one printer serves `run` and `submit`."""
    prompt_id = str(data.get("prompt_id") or "")
    node = str(data.get("node")) if data.get("node") is not None else ""
    display = str(data.get("display_node") or node)
    if kind == "execution_start":
        return ExecutionStarted(prompt_id, int(data.get("timestamp") or 0))
    if kind == "execution_cached":
        return NodesCached(prompt_id, [str(item) for item in data.get("nodes") or []])
    if kind == "executing" and node:
        return NodeStarted(prompt_id, node, display)
    if kind == "progress":
        return NodeProgress(prompt_id, node, display, float(data.get("value") or 0), float(data.get("max") or 0))
    if kind == "executed":
        return NodeFinished(prompt_id, node, display, data.get("output"))
    if kind == "execution_success":
        return ExecutionSucceeded(prompt_id, int(data.get("timestamp") or 0))
    if kind == "execution_interrupted":
        return ExecutionInterrupted(prompt_id, data.get("node_id"), data.get("node_type"),
                                    list(data.get("executed") or []))
    if kind == "execution_error":
        return ExecutionFailed(
            prompt_id, str(data.get("node_id")), str(data.get("node_type")), list(data.get("executed") or []),
            str(data.get("exception_message", "")), str(data.get("exception_type", "")),
            [str(line) for line in data.get("traceback") or []],
            dict(data.get("current_inputs") or {}), dict(data.get("current_outputs") or {}),
        )
    return None


class ComfyClient:
    """One websocket plus HTTP calls to a ComfyUI-protocol server at `server` (http://host:port)."""

    def __init__(self, server: str, token: str | None = None, timeout_s: float = 60.0) -> None:
        parsed = urllib.parse.urlsplit(server if "://" in server else f"http://{server}")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ClientError(f"--server must be an http(s)://host:port address, got {server!r}")
        self.base = f"{parsed.scheme}://{parsed.netloc}{parsed.path.rstrip('/')}"
        self.ws_base = ("wss" if parsed.scheme == "https" else "ws") + self.base[len(parsed.scheme):]
        self.loopback = is_loopback_address(parsed.hostname)
        self.token = token
        self.timeout_s = timeout_s
        self.client_id = str(uuid.uuid4())
        # System proxies never make sense for a server on this machine.
        handlers = [urllib.request.ProxyHandler({})] if self.loopback else []
        self._opener = urllib.request.build_opener(*handlers)
        self._socket: ClientConnection | None = None

    # -- HTTP ---------------------------------------------------------------------------------

    def _request(self, path: str, body: Any = None) -> tuple[int, bytes]:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base + path, data=data, headers=headers)
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except (urllib.error.URLError, OSError) as error:
            raise ClientError(f"cannot reach {self.base}: {getattr(error, 'reason', error)}") from error

    def get_json(self, path: str) -> Any:
        status, payload = self._request(path)
        if status != 200:
            raise ClientError(f"GET {path} answered HTTP {status}: {payload[:500].decode('utf-8', 'replace')}")
        return json.loads(payload)

    def post_json(self, path: str, body: Any) -> tuple[int, Any]:
        status, payload = self._request(path, body)
        try:
            return status, json.loads(payload) if payload else None
        except json.JSONDecodeError:
            return status, payload.decode("utf-8", "replace")

    def get_bytes(self, path: str, query: Mapping[str, str]) -> bytes:
        status, payload = self._request(f"{path}?{urllib.parse.urlencode(query)}")
        if status != 200:
            raise ClientError(f"GET {path} {dict(query)} answered HTTP {status}")
        return payload

    # -- websocket ------------------------------------------------------------------------------

    def connect(self) -> ComfyClient:
        """Open the websocket and wait for the server's first `status` message."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        subprotocols = [f"{TOKEN_SUBPROTOCOL_PREFIX}{self.token}"] if self.token else None
        try:
            self._socket = connect(
                f"{self.ws_base}/ws?clientId={self.client_id}", additional_headers=headers,
                subprotocols=subprotocols,  # type: ignore[arg-type]
                compression=None, max_size=_MAX_MESSAGE_BYTES, max_queue=None,
                open_timeout=self.timeout_s, proxy=None if self.loopback else True,
            )
        except (OSError, WebSocketException) as error:
            raise ClientError(f"cannot open the websocket at {self.ws_base}/ws: {error}") from error
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            kind, _ = self._receive(deadline - time.monotonic())
            if kind == "status":
                break
        return self

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> ComfyClient:
        return self.connect() if self._socket is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _receive(self, timeout_s: float | None) -> tuple[str | None, dict[str, Any]]:
        """The next text message as (type, data); (None, {}) on a timeout or a binary frame."""
        if self._socket is None:
            raise ClientError("the websocket is not connected; call connect() first")
        try:
            message = self._socket.recv(timeout=timeout_s)
        except TimeoutError:
            return None, {}
        except WebSocketException as error:
            raise ClientError(f"the websocket closed while waiting for the server: {error}") from error
        if isinstance(message, bytes):
            return None, {}  # preview frames: not needed by a script client
        parsed = json.loads(message)
        return parsed.get("type"), parsed.get("data") or {}

    # -- prompts --------------------------------------------------------------------------------

    def queue_prompt(self, prompt: Mapping[str, Any], extra_data: Mapping[str, Any] | None = None,
                     prompt_id: str | None = None) -> dict[str, Any]:
        """POST /prompt; returns the server's answer, or raises PromptRejected on a 4xx/5xx."""
        body = {"prompt": prompt, "client_id": self.client_id, "prompt_id": prompt_id or str(uuid.uuid4()),
                "extra_data": dict(extra_data or {})}
        status, answer = self.post_json("/prompt", body)
        if status != 200:
            raise PromptRejected(status, answer)
        return answer if isinstance(answer, dict) else {"prompt_id": body["prompt_id"]}

    def run_prompt(self, prompt: Mapping[str, Any], extra_data: Mapping[str, Any] | None = None,
                   sink: EventSink = discard_events, timeout_s: float | None = None) -> RunOutcome:
        """Queue a prompt and follow it to its end; `elapsed_s` runs from the POST to `executing null`."""
        prompt_id = str(uuid.uuid4())
        started = time.perf_counter()
        answer = self.queue_prompt(prompt, extra_data, prompt_id)
        outcome = self.follow(str(answer.get("prompt_id") or prompt_id), sink, timeout_s)
        outcome.elapsed_s = time.perf_counter() - started
        return outcome

    def follow(self, prompt_id: str, sink: EventSink = discard_events, timeout_s: float | None = None) -> RunOutcome:
        """Read messages for `prompt_id` until `executing` with `node: null`, passing them on as events."""
        outcome = RunOutcome(prompt_id)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        grace_until: float | None = None
        while True:
            limits = [limit for limit in (deadline, grace_until) if limit is not None]
            kind, data = self._receive(max(min(limits) - time.monotonic(), 0.0) if limits else None)
            if kind is None:
                if grace_until is not None and time.monotonic() >= grace_until:
                    return outcome  # the server reported the failure but never closed the prompt
                if deadline is not None and time.monotonic() >= deadline:
                    raise ClientError(f"prompt {prompt_id} did not finish within {timeout_s} s")
                continue
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            outcome.messages += 1
            if kind == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                return outcome
            self._record(outcome, kind, data)
            if outcome.failure is not None and grace_until is None:
                grace_until = time.monotonic() + _FAILURE_GRACE_S
            event = message_to_event(kind, data)
            if event is not None:
                sink(event)

    @staticmethod
    def _record(outcome: RunOutcome, kind: str, data: Mapping[str, Any]) -> None:
        if kind == "executing":
            outcome.executed.append(str(data.get("node")))
        elif kind == "execution_cached":
            outcome.cached.extend(str(node) for node in data.get("nodes") or [])
        elif kind == "executed":
            outcome.outputs[str(data.get("node"))] = data.get("output")
        elif kind == "execution_success":
            outcome.status = "success"
        elif kind == "execution_error" and data.get("exception_type") == BLOCKED_EXCEPTION_TYPE:
            outcome.blocked.append(dict(data))
        elif kind in ("execution_error", "execution_interrupted"):
            outcome.status = "error" if kind == "execution_error" else "interrupted"
            outcome.failure = dict(data)

    def history(self, prompt_id: str) -> dict[str, Any]:
        entry = self.get_json(f"/history/{urllib.parse.quote(prompt_id)}")
        return entry.get(prompt_id) or {}

    def download(self, image: Mapping[str, Any], out_dir: Path) -> Path:
        """Fetch one `{filename, subfolder, type}` image via /view into `out_dir`, never outside it."""
        target = out_dir / _safe_relative(str(image.get("subfolder") or ""), str(image.get("filename") or ""))
        payload = self.get_bytes("/view", {"filename": str(image.get("filename")),
                                           "subfolder": str(image.get("subfolder") or ""),
                                           "type": str(image.get("type") or "output")})
        target.parent.mkdir(parents=True, exist_ok=True)
        target = _unused(target)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        partial.write_bytes(payload)
        os.replace(partial, target)  # no half-written image if the download is cut off
        return target


def _safe_relative(subfolder: str, filename: str) -> Path:
    """A relative path from the server's names; refuses anything that could leave the folder."""
    parts = [part for part in PurePosixPath(subfolder.replace("\\", "/")).parts if part not in ("", ".")]
    single = len(PurePosixPath(filename.replace("\\", "/")).parts) == 1
    if not single or any(part == ".." or part.startswith("/") for part in [*parts, filename]):
        raise ClientError(f"refusing to write a file named by the server outside {subfolder!r}: {filename!r}")
    return Path(*parts, filename)


def _unused(path: Path) -> Path:
    """`path`, or `name_1.ext`, `name_2.ext`, ... so an earlier download is never overwritten."""
    candidate, counter = path, 0
    while candidate.exists():
        counter += 1
        candidate = path.with_name(f"{path.stem}_{counter}{path.suffix}")
    return candidate


# --------------------------------------------------------------------------- submit


def _png_text(path: Path) -> dict[str, str]:
    """Text chunks before the image data, read without decoding pixels (and without torch)."""
    from PIL import Image

    with Image.open(path) as image:
        if image.format != "PNG":
            return {}
        return {str(key): value for key, value in image.info.items() if isinstance(value, str)}


def submit_workflow(path: Path, server: str, overrides: Sequence[str], *, out_dir: Path,
                    token: str | None = None) -> int:
    """`main.py submit`: queue a workflow file, show its progress, download its images. Returns the exit code."""
    from engine.headless import (
        TerminalProgress,
        WorkflowError,
        apply_overrides,
        read_workflow_file,
        to_api_prompt,
    )

    client = ComfyClient(server, token)
    prompt: dict[str, Any] = {}
    try:
        source = read_workflow_file(path, png_text=_png_text)
        object_info = client.get_json("/object_info")
        converted = to_api_prompt(source.workflow, object_info, fallback_prompt=source.embedded_prompt)
        prompt = apply_overrides(converted, overrides, object_info)
        extra_data = {"extra_pnginfo": source.extra_pnginfo} if source.extra_pnginfo else {}
        with client:
            outcome = client.run_prompt(prompt, extra_data, TerminalProgress(prompt=prompt))
        if outcome.status != "success":
            return 1
        for image in _history_images(client.history(outcome.prompt_id)):
            print(client.download(image, out_dir))
        return 0
    except WorkflowError as error:
        print(f"flowmill: {error}", file=sys.stderr)
        return 1
    except PromptRejected as rejected:
        print(f"flowmill: {_rejection_text(rejected, prompt)}", file=sys.stderr)
        return 1 if rejected.status == 400 else 2
    except ClientError as error:
        print(f"flowmill: {error}", file=sys.stderr)
        return 2


def _history_images(entry: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [image for ui in (entry.get("outputs") or {}).values() for image in (ui.get("images") or [])]


def _rejection_text(rejected: PromptRejected, prompt: Mapping[str, Any]) -> str:
    from engine.headless import format_validation_errors

    body = rejected.body
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        return format_validation_errors(body["error"], body.get("node_errors") or {}, prompt)
    return f"{rejected}: {body if isinstance(body, str) else json.dumps(body)}"
