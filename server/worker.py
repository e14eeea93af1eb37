"""The single worker thread that runs prompts, and the bridge that carries its events to the loop.

The event loop never runs torch work: the worker claims prompts from the persistent store,
runs them on the executor, writes the history entry, and posts websocket messages through
`EventBridge`, which batches them into one `call_soon_threadsafe` per burst and coalesces
repeated progress updates of the same node. An exception escaping the executor fails only
that prompt; the thread itself never dies of it, and `ensure_running` restarts it if
anything else ever kills it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.context import InterruptFlag
from engine.events import Event
from engine.executor import Executor, RunRequest
from server.messages import HISTORY_MESSAGE_TYPES, Message, messages_for, prompt_done_message, status_message
from server.store import FinishState, PromptStore, QueueItem

log = logging.getLogger(__name__)
IDLE_GC_SECONDS = 10.0
FLUSH_INTERVAL = 0.01  # seconds; the longest a message waits for its batch
Delivery = list[tuple[Message, str | None]]
# Broadcast even when the prompt has a client id (ComfyUI: status and interrupts go to all).
_BROADCAST_TYPES = frozenset({"execution_interrupted"})


class EventBridge:
    """Thread-safe hand-off of messages from the worker thread to the event loop.

    Deliveries are paced: after a flush, the next one waits until FLUSH_INTERVAL has passed,
    so a burst of fast nodes reaches the sockets as one batch (one corked write) instead of
    one send per message, which profiling showed to be half the server's time. A message
    after a quiet spell, and an `urgent` one (the end of a prompt), goes out at once.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deliver: Callable[[Delivery], None] = lambda batch: None
        self._lock = threading.Lock()
        self._pending: Delivery = []
        self._scheduled = False
        self._urgent = False
        self._last_flush = 0.0

    def connect(self, deliver: Callable[[Delivery], None]) -> None:
        """Where batches go (the socket hub); called once while the app is built."""
        self._deliver = deliver

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop that delivers; known only once the server is starting."""
        self._loop = loop

    def post(self, message: Message, target: str | None, *, urgent: bool = False) -> None:
        with self._lock:
            if self._supersedes(message):
                del self._pending[-2:]  # the unsent update of the same node is out of date
            self._pending.append((message, target))
            if urgent and not self._urgent:
                self._urgent = True
            elif self._scheduled:
                return
            self._scheduled = True
        if self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(self._schedule_flush)
        except RuntimeError:  # the loop is closed: the server is shutting down
            pass

    def _schedule_flush(self) -> None:
        assert self._loop is not None
        wait = self._last_flush + FLUSH_INTERVAL - self._loop.time()
        if wait <= 0 or self._urgent:
            self._flush()
        else:
            self._loop.call_later(wait, self._flush)

    def _supersedes(self, message: Message) -> bool:
        """True when the newest pending pair is a `progress`/`progress_state` of the same node."""
        if message.type != "progress" or len(self._pending) < 2:
            return False
        previous, state = self._pending[-2][0], self._pending[-1][0]
        return (previous.type == "progress" and state.type == "progress_state"
                and previous.data["node"] == message.data["node"])

    def _flush(self) -> None:
        with self._lock:
            batch, self._pending, self._scheduled, self._urgent = self._pending, [], False, False
        if self._loop is not None:
            self._last_flush = self._loop.time()
        if batch:
            self._deliver(batch)


@dataclass
class _Record:
    """What a finished prompt's history entry holds."""

    messages: list[list[Any]]
    outputs: dict[str, Any]
    meta: dict[str, Any]

    def json_safe(self) -> _Record:
        """A copy that survives JSON: values it cannot hold become their repr (raises on cycles)."""
        safe = json.loads(json.dumps([self.messages, self.outputs, self.meta], default=repr))
        return _Record(*safe)


def _unrecorded_history(prompt_id: str) -> _Record:
    """The entry of a prompt whose real history could not be written: an error, no outputs."""
    data = {"prompt_id": prompt_id, "node_id": None, "node_type": None, "executed": [],
            "exception_message": "the history of this prompt could not be recorded (its outputs or messages "
                                 "cannot be stored as JSON); see the server log",
            "exception_type": "HistoryNotRecorded", "traceback": [], "current_inputs": {}, "current_outputs": {}}
    return _Record([["execution_error", data]], {}, {})


@dataclass
class _Running:
    prompt_id: str
    client_id: str | None
    interrupt: InterruptFlag
    node: str | None = None
    display_node: str | None = None


class PromptWorker:
    def __init__(self, executor: Executor, store: PromptStore, bridge: EventBridge, *,
                 redact: Callable[[Any], Any] = lambda value: value) -> None:
        self._executor = executor
        # Error messages go to clients and into history: without the server's absolute paths.
        self._redact = redact
        self._store = store
        self.bridge = bridge
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._running: _Running | None = None
        self._free_request: tuple[bool, bool] | None = None
        self._thread: threading.Thread | None = None

    # -- control (called from the event loop) ---------------------------------------------

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="flowmill-worker", daemon=True)
        self._thread.start()

    def ensure_running(self) -> None:
        if self._stopping.is_set():
            return
        if self._thread is None or not self._thread.is_alive():
            log.error("the prompt worker had stopped; starting a new one")
            self.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self.interrupt(None)
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        self.ensure_running()
        self._wakeup.set()

    def interrupt(self, prompt_id: str | None) -> bool:
        """Interrupt the running prompt (only if it is `prompt_id`, when given)."""
        with self._lock:
            running = self._running
            if running is None or (prompt_id is not None and running.prompt_id != prompt_id):
                return False
            running.interrupt.set()
            return True

    def request_free(self, unload_models: bool, free_memory: bool) -> None:
        with self._lock:
            self._free_request = (unload_models, free_memory)
        self._wakeup.set()

    def catch_up(self) -> list[Message]:
        """What a (re)connecting client needs to know about the running prompt."""
        running = self._running
        if running is None or running.node is None:
            return []
        return [Message("executing", {"node": running.node, "display_node": running.display_node,
                                      "prompt_id": running.prompt_id})]

    # -- the thread ---------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._apply_free_request()
            try:
                item = self._store.claim_next()
            except Exception:
                log.exception("could not read the prompt queue")
                item = None
            if item is None:
                if not self._wakeup.wait(IDLE_GC_SECONDS):
                    gc.collect()  # idle: return memory, as ComfyUI does every 10 s
                self._wakeup.clear()
                continue
            self._run_one(item)

    def _apply_free_request(self) -> None:
        with self._lock:
            request, self._free_request = self._free_request, None
        if request is not None:
            self._executor.free(free_memory=request[0] or request[1], unload_models=request[0])

    def _run_one(self, item: QueueItem) -> None:
        client_id = item.extra_data.get("client_id")
        running = _Running(item.prompt_id, client_id, InterruptFlag())
        with self._lock:
            self._running = running
        history: list[list] = []
        state: FinishState = "error"
        outputs: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        try:
            request = RunRequest(item.prompt_id, item.prompt, list(item.outputs_to_execute), item.extra_data)
            result = self._executor.run(request, lambda event: self._publish(running, event, history),
                                        running.interrupt)
            state, outputs, meta = result.status, result.outputs, result.meta
        except BaseException as error:  # an executor bug fails this prompt, never the worker
            log.exception("prompt %r failed inside the executor", item.prompt_id)
            self._report_crash(running, error, history)
        finally:
            with self._lock:
                self._running = None
        self._record(item.prompt_id, state, _Record(history, outputs, meta))
        self.bridge.post(prompt_done_message(item.prompt_id), client_id, urgent=True)
        try:
            self.bridge.post(status_message(self._store.queue_remaining()), None, urgent=True)
        except Exception:
            log.exception("could not count the prompt queue")

    def _record(self, prompt_id: str, state: FinishState, record: _Record) -> None:
        """Write the history entry, so the prompt never stays `running` because of its values.

        A value JSON cannot hold (a node's odd `ui`) gets a second try with every such value
        replaced by its repr; if even that fails, the prompt is finished as an error with no
        outputs and a message saying why.
        """
        attempts: list[tuple[FinishState, Callable[[], _Record]]] = [
            (state, lambda: record), (state, record.json_safe), ("error", lambda: _unrecorded_history(prompt_id))]
        for final_state, build in attempts:
            try:
                final = build()  # inside the try: json_safe raises on circular values
                self._store.finish(prompt_id, final_state, messages=final.messages, outputs=final.outputs,
                                   meta=final.meta)
                return
            except Exception:
                log.exception("could not record the history of prompt %r", prompt_id)
        log.error("prompt %r could not be finished and stays 'running' until the next restart", prompt_id)

    def _publish(self, running: _Running, event: Event, history: list[list]) -> None:
        for message in messages_for(event):
            if message.type == "execution_error":
                message = Message(message.type, self._redact(message.data), message.image)
            if message.type in HISTORY_MESSAGE_TYPES:
                history.append([message.type, message.data])
            if message.type == "executing":
                running.node, running.display_node = message.data["node"], message.data["display_node"]
            target = None if message.type in _BROADCAST_TYPES else running.client_id
            self.bridge.post(message, target)

    def _report_crash(self, running: _Running, error: BaseException, history: list[list]) -> None:
        data = {"prompt_id": running.prompt_id, "node_id": running.node, "node_type": None, "executed": [],
                "exception_message": str(error), "exception_type": type(error).__name__,
                "traceback": traceback.format_exception(type(error), error, error.__traceback__),
                "current_inputs": {}, "current_outputs": {}}
        data = self._redact(data)
        history.append(["execution_error", data])
        self.bridge.post(Message("execution_error", data), running.client_id)
