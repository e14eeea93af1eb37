"""The worker thread survives what kills ComfyUI's: an escaping exception, or the thread dying."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.cache import OutputCache
from engine.executor import Executor, RunResult
from engine.paths import Folders
from server.messages import Message
from server.store import PromptStore
from server.worker import EventBridge, PromptWorker
from tests.fixtures.stub_nodes import stub_registry

GRAPH = {"1": {"class_type": "StubImage", "inputs": {"content": "WHITE", "height": 2, "width": 2, "batch_size": 1}},
         "2": {"class_type": "StubOutput", "inputs": {"value": ["1", 0]}}}


def _wait_for(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def _worker(folders: Folders, store: PromptStore) -> tuple[PromptWorker, list[Message]]:
    delivered: list[Message] = []
    bridge = EventBridge()
    bridge.connect(lambda batch: delivered.extend(message for message, _ in batch))
    return PromptWorker(Executor(stub_registry(), OutputCache(), folders), store, bridge), delivered


def test_an_exception_escaping_the_executor_fails_only_that_prompt(folders: Folders, tmp_path: Path) -> None:
    with PromptStore(tmp_path / "q.sqlite3") as store:
        worker, _ = _worker(folders, store)
        original = worker._executor.run
        calls = []

        def flaky_run(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("executor bug")
            return original(*args, **kwargs)

        worker._executor.run = flaky_run  # type: ignore[method-assign]
        for prompt_id in ("bad", "good"):
            store.enqueue(prompt_id, store.next_number(), GRAPH, {}, ["2"])
        worker.start()
        try:
            _wait_for(lambda: store.state_of("good") == "success")
            assert store.state_of("bad") == "error"
            messages = store.history_item("bad")["bad"]["status"]["messages"]
            assert messages[-1][0] == "execution_error" and "executor bug" in messages[-1][1]["exception_message"]
            assert store.history_item("good")["good"]["outputs"]["2"]["values"] == [[1, 2, 2, 3]]
        finally:
            worker.stop()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the death is the point
def test_a_dead_worker_thread_is_restarted(folders: Folders, tmp_path: Path) -> None:
    with PromptStore(tmp_path / "q.sqlite3") as store:
        worker, _ = _worker(folders, store)
        original = store.claim_next
        store.claim_next = lambda: (_ for _ in ()).throw(SystemExit("thread killed"))  # type: ignore[method-assign]
        worker.start()
        _wait_for(lambda: not worker._thread.is_alive())
        store.claim_next = original  # type: ignore[method-assign]
        store.enqueue("after", store.next_number(), GRAPH, {}, ["2"])
        worker.ensure_running()  # what the server's watchdog does every few seconds
        try:
            _wait_for(lambda: store.state_of("after") == "success")
        finally:
            worker.stop()


def _finishing_with(worker: PromptWorker, outputs: dict) -> None:
    """Make every run succeed with `outputs` as its history outputs."""
    worker._executor.run = lambda *args, **kwargs: RunResult(  # type: ignore[method-assign]
        "success", outputs, {}, ["2"])


def test_outputs_json_cannot_hold_are_recorded_as_their_repr(folders: Folders, tmp_path: Path) -> None:
    with PromptStore(tmp_path / "q.sqlite3") as store:
        worker, _ = _worker(folders, store)
        _finishing_with(worker, {"2": {"values": [object()]}})
        store.enqueue("odd", store.next_number(), GRAPH, {}, ["2"])
        worker.start()
        try:
            _wait_for(lambda: store.state_of("odd") not in ("pending", "running"))
            assert store.state_of("odd") == "success"
            (value,) = store.history_item("odd")["odd"]["outputs"]["2"]["values"]
            assert value.startswith("<object object")
        finally:
            worker.stop()


def test_history_that_cannot_be_stored_at_all_finishes_as_an_error(folders: Folders, tmp_path: Path) -> None:
    circular: dict = {}
    circular["self"] = circular  # not even repr-substitution makes this JSON
    with PromptStore(tmp_path / "q.sqlite3") as store:
        worker, _ = _worker(folders, store)
        _finishing_with(worker, {"2": circular})
        store.enqueue("cyclic", store.next_number(), GRAPH, {}, ["2"])
        store.enqueue("next", store.next_number(), GRAPH, {}, ["2"])
        worker.start()
        try:
            _wait_for(lambda: store.state_of("next") not in ("pending", "running"))
            assert store.state_of("cyclic") == "error"
            entry = store.history_item("cyclic")["cyclic"]
            assert entry["outputs"] == {}
            kind, data = entry["status"]["messages"][-1]
            assert kind == "execution_error" and "could not be recorded" in data["exception_message"]
        finally:
            worker.stop()
