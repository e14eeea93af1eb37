"""The `/ws` endpoint and the hub that routes messages to connected clients.

Each client has a bounded send queue and its own sender task, so one slow or dead client
can neither stall the others nor grow memory without limit: a client whose queue overflows
is disconnected. Send errors of any kind (OSError included, ComfyUI #1442) only drop that
client. Messages about a prompt go to the client that submitted it; the rest are broadcast.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from server.messages import Message, binary_frame, status_message
from server.security import token_subprotocols

log = logging.getLogger(__name__)
SEND_QUEUE_LIMIT = 20_000
MAX_CLIENT_MESSAGE = 64 * 1024


def server_features(max_upload_size: int) -> dict[str, object]:
    """The server's feature flags (ComfyUI `feature_flags`): the websocket reply and GET /features."""
    return {"supports_preview_metadata": True, "max_upload_size": max_upload_size}


def encode_text_frame(message: Message) -> str | None:
    """A text frame's JSON, or None (logged) for the rare message that cannot be encoded at all.

    `repr` stands in for values JSON cannot hold (a node's odd `ui` entry), and a circular one
    only loses its own message: one bad value never costs the client its connection.
    """
    try:
        return json.dumps({"type": message.type, "data": message.data}, default=repr)
    except (TypeError, ValueError, RecursionError) as error:  # circular data, non-string keys
        log.warning("not sending a %r message that cannot be encoded as JSON: %s", message.type, error)
        return None


@contextmanager
def _coalesced(raw_socket: Any) -> Iterator[None]:
    """Hold a burst of frames in the kernel and send them together (Linux TCP_CORK).

    Without it every frame is its own send() and, on loopback, its own packet delivery:
    profiled, that was half the server's time on a 10,000-node prompt. Uncorking flushes at
    once, so nothing waits for a timer. Elsewhere (no TCP_CORK, or no socket) this does nothing.
    """
    cork = getattr(socket, "TCP_CORK", None)
    if cork is None or raw_socket is None:
        yield
        return
    try:
        raw_socket.setsockopt(socket.IPPROTO_TCP, cork, 1)
    except OSError:
        yield
        return
    try:
        yield
    finally:
        with suppress(OSError):
            raw_socket.setsockopt(socket.IPPROTO_TCP, cork, 0)


@dataclass
class _Client:
    sid: str
    socket: web.WebSocketResponse
    raw_socket: Any = None
    queue: asyncio.Queue[Message] = field(default_factory=lambda: asyncio.Queue(SEND_QUEUE_LIMIT))
    wants_metadata: bool = False
    sender: asyncio.Task | None = None


class SocketHub:
    """Connected websocket clients by client id; lives on the event loop thread."""

    def __init__(self, features: dict[str, object], catch_up: Callable[[], list[Message]],
                 queue_remaining: Callable[[], int], store_pool: Executor | None = None) -> None:
        self._clients: dict[str, _Client] = {}
        self._features = dict(features)
        self._catch_up = catch_up
        self._queue_remaining = queue_remaining  # blocking (SQLite): only ever called in a thread
        self._store_pool = store_pool  # the control routes' pool: never behind file or image work
        # The loop keeps only weak references to tasks: a close nobody holds can be collected mid-way.
        self._closing: set[asyncio.Task[Any]] = set()

    @property
    def features(self) -> dict[str, object]:
        """A copy of the feature-flag map, for GET /features."""
        return dict(self._features)

    def __len__(self) -> int:
        return len(self._clients)

    def deliver(self, messages: list[tuple[Message, str | None]]) -> None:
        """Queue messages for their targets (None broadcasts). Never raises."""
        for message, target in messages:
            if target is None:
                for client in list(self._clients.values()):
                    self._enqueue(client, message)
            elif target in self._clients:
                self._enqueue(self._clients[target], message)

    def _enqueue(self, client: _Client, message: Message) -> None:
        try:
            client.queue.put_nowait(message)
        except asyncio.QueueFull:
            log.warning("websocket client %r is not reading; disconnecting it", client.sid)
            self._drop(client)

    def _drop(self, client: _Client) -> None:
        if self._clients.get(client.sid) is client:
            del self._clients[client.sid]
        if client.sender is not None:
            client.sender.cancel()
        closing = asyncio.ensure_future(client.socket.close(code=WSCloseCode.GOING_AWAY))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def _send_loop(self, client: _Client) -> None:
        while True:
            # Wake once per burst, not once per message: a 10,000-node prompt sends 10,000 messages.
            batch = [await client.queue.get()]
            while not client.queue.empty():
                batch.append(client.queue.get_nowait())
            try:
                with _coalesced(client.raw_socket if len(batch) > 1 else None):
                    for message in batch:
                        if message.is_binary:
                            await client.socket.send_bytes(binary_frame(message, client.wants_metadata))
                        elif (text := encode_text_frame(message)) is not None:
                            await client.socket.send_str(text)
            except Exception as error:  # any send failure ends this client only
                log.info("dropping websocket client %r: %s", client.sid, error)
                self._drop(client)
                return

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        connection = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_CLIENT_MESSAGE,
                                       protocols=token_subprotocols(request))
        await connection.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        # Counted before the client is registered, so the status below is still its first message.
        remaining = await asyncio.get_running_loop().run_in_executor(self._store_pool, self._queue_remaining)
        previous = self._clients.get(sid)
        if previous is not None:
            self._drop(previous)  # a reconnecting client replaces its old socket (ComfyUI semantics)
        client = _Client(sid, connection, request.transport.get_extra_info("socket") if request.transport else None)
        self._clients[sid] = client
        client.sender = asyncio.ensure_future(self._send_loop(client))
        self._enqueue(client, status_message(remaining, sid=sid))
        for message in self._catch_up():
            self._enqueue(client, message)
        try:
            async for incoming in connection:
                if incoming.type == WSMsgType.TEXT:
                    self._on_client_message(client, incoming.data)
        finally:
            if self._clients.get(sid) is client:
                del self._clients[sid]
            client.sender.cancel()
        return connection

    def _on_client_message(self, client: _Client, text: str) -> None:
        try:
            parsed = json.loads(text)
        except ValueError:
            return
        if isinstance(parsed, dict) and parsed.get("type") == "feature_flags":
            flags = parsed.get("data") or {}
            client.wants_metadata = bool(isinstance(flags, dict) and flags.get("supports_preview_metadata"))
            self._enqueue(client, Message("feature_flags", dict(self._features)))

    async def close_all(self) -> None:
        for client in list(self._clients.values()):
            if client.sender is not None:
                client.sender.cancel()
            await client.socket.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
        self._clients.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

