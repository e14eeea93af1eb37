"""PromptStore: queue order, atomic claims, final terminal states, history shape and paging,
secrets never on disk, durability across reopen and SIGKILL (security.md §4, §6 check 12).

Every test runs against a real SQLite file under tmp_path.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from server.store import (
    RESTART_REASON,
    SENSITIVE_EXTRA_DATA_KEYS,
    PromptStore,
    QueueItem,
    StoreCorruptError,
    StoreError,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
TERMINAL = ("success", "error", "interrupted", "cancelled")


def graph(index: int) -> dict[str, Any]:
    """A small API-format graph that differs per index, with values JSON must round-trip exactly."""
    return {
        "1": {"class_type": "Constant", "inputs": {"value": index, "scale": 0.1 + index / 3}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": f"run é {index}"}},
    }


def submit(store: PromptStore, prompt_id: str, *, front: bool = False, index: int = 0) -> float:
    number = store.next_number(front=front)
    store.enqueue(prompt_id, number, graph(index), {"client_id": "client-a"}, ["2"])
    return number


def run_to(store: PromptStore, prompt_id: str, state: str) -> None:
    """Drive a freshly submitted prompt (the only pending one) into `state`."""
    if state == "cancelled":
        assert store.delete_pending([prompt_id]) == [prompt_id]
        return
    claimed = store.claim_next()
    assert claimed is not None and claimed.prompt_id == prompt_id
    assert store.finish(prompt_id, state, messages=[], outputs={}, meta={})


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "prompts.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[PromptStore]:
    with PromptStore(db_path) as opened:
        yield opened


# -- ordering ---------------------------------------------------------------------------------


def test_numbers_increase_and_front_jumps_the_queue(store: PromptStore) -> None:
    assert [submit(store, f"n{i}") for i in range(3)] == [1.0, 2.0, 3.0]
    # ComfyUI negates the counter for front, so a later front prompt runs before an earlier one.
    assert submit(store, "f1", front=True) == -4.0
    assert submit(store, "f2", front=True) == -5.0

    running, pending = store.queue()
    assert running == []
    assert [item.prompt_id for item in pending] == ["f2", "f1", "n0", "n1", "n2"]

    claimed = [store.claim_next() for _ in range(5)]
    assert [item.prompt_id for item in claimed if item] == ["f2", "f1", "n0", "n1", "n2"]
    assert store.claim_next() is None


def test_equal_numbers_run_in_submission_order(store: PromptStore) -> None:
    for prompt_id in ("a", "b", "c"):
        store.enqueue(prompt_id, 7.0, graph(0), {}, [])
    store.enqueue("early", 6.5, graph(0), {}, [])
    assert [item.prompt_id for item in store.queue()[1]] == ["early", "a", "b", "c"]


def test_numbers_keep_increasing_after_reopen(db_path: Path) -> None:
    with PromptStore(db_path) as store:
        submit(store, "a")
        submit(store, "b")
    with PromptStore(db_path) as store:
        assert submit(store, "c") == 3.0
        assert [item.prompt_id for item in store.queue()[1]] == ["a", "b", "c"]


def test_queue_lists_running_and_pending_and_counts_them(store: PromptStore) -> None:
    for i in range(4):
        submit(store, f"p{i}", index=i)
    claimed = store.claim_next()
    assert claimed == QueueItem(1.0, "p0", graph(0), {"client_id": "client-a"}, ["2"])

    running, pending = store.queue()
    assert [item.prompt_id for item in running] == ["p0"]
    assert [item.prompt_id for item in pending] == ["p1", "p2", "p3"]
    assert store.queue_remaining() == 4
    assert store.finish("p0", "success", messages=[], outputs={}, meta={})
    assert store.queue_remaining() == 3


def test_comfy_tuple_uses_ints_for_whole_numbers(store: PromptStore) -> None:
    submit(store, "whole", front=True)
    store.enqueue("fraction", 2.5, graph(1), {}, ["2"])
    running, pending = store.queue()
    tuples = [item.as_comfy_tuple() for item in pending]
    assert tuples[0] == [-1, "whole", graph(0), {"client_id": "client-a"}, ["2"]]
    assert isinstance(tuples[0][0], int)
    assert tuples[1][0] == 2.5


def test_enqueue_rejects_duplicates_and_bad_values(store: PromptStore) -> None:
    submit(store, "dup")
    with pytest.raises(ValueError, match="'dup' is already"):
        submit(store, "dup")
    run_to(store, "dup", "success")
    with pytest.raises(ValueError, match="already"):
        submit(store, "dup")  # a finished id is still taken
    with pytest.raises(ValueError, match="finite"):
        store.enqueue("nan", float("nan"), {}, {}, [])
    with pytest.raises(ValueError, match="non-empty string"):
        store.enqueue("", 1.0, {}, {}, [])
    with pytest.raises(TypeError, match="prompt must be JSON-serialisable"):
        store.enqueue("obj", 1.0, {"1": object()}, {}, [])
    assert store.state_of("nan") is None and store.state_of("obj") is None


# -- concurrency ------------------------------------------------------------------------------


def test_concurrent_claims_take_every_item_exactly_once(store: PromptStore) -> None:
    ids = [f"p{i:03d}" for i in range(200)]
    for prompt_id in ids:
        submit(store, prompt_id)
    start = threading.Barrier(8)
    claimed_by_thread: list[list[QueueItem]] = [[] for _ in range(8)]

    def worker(index: int) -> None:
        start.wait()
        while (item := store.claim_next()) is not None:
            claimed_by_thread[index].append(item)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    claimed = [item.prompt_id for items in claimed_by_thread for item in items]
    assert sorted(claimed) == ids  # every item once: none lost, none twice
    for items in claimed_by_thread:  # each thread saw the queue drain in order
        assert [item.number for item in items] == sorted(item.number for item in items)
    running, pending = store.queue()
    assert len(running) == 200 and pending == []


def test_concurrent_enqueue_and_claim(store: PromptStore) -> None:
    produced = [[f"t{t}-{i}" for i in range(50)] for t in range(4)]
    done_producing = threading.Event()
    claimed: list[str] = []
    claimed_lock = threading.Lock()

    def producer(ids: list[str]) -> None:
        for prompt_id in ids:
            submit(store, prompt_id)

    def consumer() -> None:
        while True:
            item = store.claim_next()
            if item is None:
                if done_producing.is_set() and store.queue()[1] == []:
                    return
                continue
            with claimed_lock:
                claimed.append(item.prompt_id)

    producers = [threading.Thread(target=producer, args=(ids,)) for ids in produced]
    consumers = [threading.Thread(target=consumer) for _ in range(4)]
    for thread in producers + consumers:
        thread.start()
    for thread in producers:
        thread.join(timeout=60)
    done_producing.set()
    for thread in consumers:
        thread.join(timeout=60)

    assert sorted(claimed) == sorted(prompt_id for ids in produced for prompt_id in ids)


def test_cancel_racing_claim_has_exactly_one_winner(store: PromptStore) -> None:
    ids = [f"p{i:03d}" for i in range(100)]
    for prompt_id in ids:
        submit(store, prompt_id)
    start = threading.Barrier(3)
    claimed: list[str] = []
    cancelled: list[list[str]] = [[], []]

    def claimer() -> None:
        start.wait()
        while (item := store.claim_next()) is not None:
            claimed.append(item.prompt_id)

    def canceller(index: int) -> None:
        start.wait()
        for prompt_id in reversed(ids):  # from the back, to meet the claimer in the middle
            cancelled[index].extend(store.delete_pending([prompt_id]))

    threads = [threading.Thread(target=claimer)] + [threading.Thread(target=canceller, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    winners = claimed + cancelled[0] + cancelled[1]
    assert sorted(winners) == ids
    for prompt_id in ids:
        assert store.state_of(prompt_id) == ("running" if prompt_id in claimed else "cancelled")


# -- terminal states --------------------------------------------------------------------------


@pytest.mark.parametrize("terminal", TERMINAL)
def test_terminal_states_are_final(store: PromptStore, terminal: str) -> None:
    submit(store, "p")
    run_to(store, "p", terminal)
    before = store.history_item("p")

    for target in ("success", "error", "interrupted"):
        assert store.finish("p", target, messages=[["execution_success", {}]], outputs={"9": {}}, meta={}) is False
    assert store.delete_pending(["p"]) == []
    assert store.clear_pending() == []
    assert store.claim_next() is None
    store.recover_after_restart()

    assert store.state_of("p") == terminal
    assert store.history_item("p") == before


def test_finish_needs_a_running_prompt(store: PromptStore) -> None:
    submit(store, "p")
    assert store.finish("p", "success", messages=[], outputs={}, meta={}) is False  # still pending
    assert store.finish("unknown", "error", messages=[], outputs={}, meta={}) is False
    assert store.state_of("p") == "pending"
    store.claim_next()
    with pytest.raises(ValueError, match="state must be one of"):
        store.finish("p", "cancelled", messages=[], outputs={}, meta={})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"messages\[0\]"):
        store.finish("p", "success", messages=[["only-event"]], outputs={}, meta={})
    assert store.state_of("p") == "running"  # a rejected call changed nothing


def test_cancel_is_idempotent(store: PromptStore) -> None:
    for i in range(4):
        submit(store, f"p{i}")
    store.claim_next()  # p0 is running: not cancellable through the queue

    assert store.delete_pending(["p2", "p2", "p0", "missing"]) == ["p2"]
    assert store.delete_pending(["p2"]) == []
    assert store.clear_pending() == ["p1", "p3"]
    assert store.clear_pending() == []

    running, pending = store.queue()
    assert [item.prompt_id for item in running] == ["p0"] and pending == []
    assert store.queue_remaining() == 1
    assert store.history() == {}  # cancelled prompts never ran, so they are not history
    assert store.history_item("p2") == {}
    assert [store.state_of(f"p{i}") for i in range(4)] == ["running", "cancelled", "cancelled", "cancelled"]
    with pytest.raises(TypeError, match="single string"):
        store.delete_pending("p1")


# -- history ----------------------------------------------------------------------------------


def test_history_entry_has_comfyui_shape(store: PromptStore) -> None:
    submit(store, "ok", index=1)
    submit(store, "bad", index=2)
    submit(store, "stopped", index=3)
    submit(store, "waiting", index=4)
    messages = [["execution_start", {"prompt_id": "ok", "timestamp": 1}], ("execution_success", {"prompt_id": "ok"})]
    outputs = {"2": {"images": [{"filename": "a_00001_.png", "subfolder": "", "type": "output"}]}}
    meta = {"2": {"node_id": "2", "display_node": "2", "parent_node": None, "real_node_id": "2"}}

    store.claim_next()
    assert store.finish("ok", "success", messages=messages, outputs=outputs, meta=meta)
    store.claim_next()
    assert store.finish("bad", "error", messages=[["execution_error", {"node_id": "1"}]], outputs={}, meta={})
    store.claim_next()
    assert store.finish("stopped", "interrupted", messages=[], outputs={}, meta={})

    history = store.history()
    assert list(history) == ["ok", "bad", "stopped"]
    assert history["ok"] == {
        "prompt": [1, "ok", graph(1), {"client_id": "client-a"}, ["2"]],
        "outputs": outputs,
        "status": {"status_str": "success", "completed": True, "messages": [list(m) for m in messages]},
        "meta": meta,
    }
    assert history["bad"]["status"] == {
        "status_str": "error",
        "completed": False,
        "messages": [["execution_error", {"node_id": "1"}]],
    }
    assert history["stopped"]["status"] == {"status_str": "error", "completed": False, "messages": []}
    assert store.history_item("ok") == {"ok": history["ok"]}
    assert store.history_item("waiting") == {} and store.history_item("nobody") == {}
    assert store.state_of("waiting") == "pending" and store.state_of("nobody") is None
    json.dumps(history)  # the whole thing is JSON as served


def test_history_is_in_finishing_order(store: PromptStore) -> None:
    for prompt_id in ("a", "b", "c"):
        submit(store, prompt_id)
    for _ in range(3):
        store.claim_next()
    for prompt_id in ("c", "a", "b"):
        store.finish(prompt_id, "success", messages=[], outputs={}, meta={})
    assert list(store.history()) == ["c", "a", "b"]


def comfy_page(keys: list[str], max_items: int | None, offset: int | None) -> list[str]:
    """The paging rule stated in PromptStore.history, written independently as the oracle."""
    if max_items is not None and max_items <= 0:
        return []
    if offset is None or offset < 0:
        return keys if max_items is None else keys[max(len(keys) - max_items, 0) :]
    end = None if max_items is None else offset + max_items
    return keys[offset:end]


@pytest.mark.parametrize("max_items", [None, 0, 1, 3, 10, 25])
@pytest.mark.parametrize("offset", [None, -1, 0, 2, 9, 10, 40])
def test_history_paging(tmp_path: Path, max_items: int | None, offset: int | None) -> None:
    keys = [f"h{i}" for i in range(10)]
    with PromptStore(tmp_path / "paging.db") as store:
        for prompt_id in keys:
            submit(store, prompt_id)
            run_to(store, prompt_id, "success")
        assert list(store.history(max_items=max_items, offset=offset)) == comfy_page(keys, max_items, offset)


def test_history_paging_examples(store: PromptStore) -> None:
    keys = [f"h{i}" for i in range(6)]
    for prompt_id in keys:
        submit(store, prompt_id)
        run_to(store, prompt_id, "success")
    assert list(store.history(max_items=2)) == ["h4", "h5"]  # most recent, still oldest first
    assert list(store.history(max_items=2, offset=1)) == ["h1", "h2"]
    assert list(store.history(offset=4)) == ["h4", "h5"]


def test_delete_and_clear_history_leave_the_queue_alone(store: PromptStore) -> None:
    for prompt_id in ("a", "b", "c"):
        submit(store, prompt_id)
        run_to(store, prompt_id, "success")
    submit(store, "queued")
    assert store.delete_history(["b", "queued", "missing"]) == ["b"]
    assert list(store.history()) == ["a", "c"]
    assert store.state_of("b") is None
    assert store.clear_history() == ["a", "c"]
    assert store.history() == {}
    assert [item.prompt_id for item in store.queue()[1]] == ["queued"]


def test_max_history_prunes_oldest_entries_and_tombstones_separately(db_path: Path) -> None:
    with PromptStore(db_path, max_history=3) as store:
        for i in range(5):
            submit(store, f"h{i}")
            run_to(store, f"h{i}", "success")
        assert list(store.history()) == ["h2", "h3", "h4"]
        assert store.state_of("h0") is None
        for i in range(5):
            submit(store, f"c{i}")
        store.clear_pending()
        assert list(store.history()) == ["h2", "h3", "h4"]  # cancelling a long queue evicts no history
        assert [store.state_of(f"c{i}") for i in range(5)] == [None, None, "cancelled", "cancelled", "cancelled"]
    with pytest.raises(ValueError, match="max_history"):
        PromptStore(db_path, max_history=0)


# -- secrets ----------------------------------------------------------------------------------


def raw_bytes(db_path: Path) -> bytes:
    """Every byte SQLite has written for this database: main file, WAL and shared memory."""
    return b"".join(path.read_bytes() for path in db_path.parent.glob(db_path.name + "*"))


def test_sensitive_extra_data_never_reaches_disk(db_path: Path) -> None:
    secrets = {key: f"SECRET-{i}-a8f3c1" for i, key in enumerate(SENSITIVE_EXTRA_DATA_KEYS)}
    extra_data = {"client_id": "client-a", **secrets}
    with PromptStore(db_path) as store:
        store.enqueue("p", store.next_number(), graph(0), extra_data, ["2"])
        assert extra_data["api_key_comfy_org"] == secrets["api_key_comfy_org"]  # caller's dict untouched
        assert store.queue()[1][0].extra_data == {"client_id": "client-a"}
        store.claim_next()
        store.finish("p", "success", messages=[], outputs={}, meta={})
        assert store.history()["p"]["prompt"][3] == {"client_id": "client-a"}
        on_disk_while_open = raw_bytes(db_path)
    on_disk_after_close = raw_bytes(db_path)
    for data in (on_disk_while_open, on_disk_after_close):
        assert b"client-a" in data  # the check below would be vacuous if nothing were stored
        for key, value in secrets.items():
            assert value.encode() not in data
            assert key.encode() not in data


# -- persistence ------------------------------------------------------------------------------


def test_reopen_after_close_keeps_everything(db_path: Path) -> None:
    with PromptStore(db_path) as store:
        for i in range(5):
            submit(store, f"p{i}", index=i)
        submit(store, "urgent", front=True, index=9)
        store.claim_next()  # urgent
        store.finish("urgent", "success", messages=[["execution_success", {}]], outputs={"2": {"text": ["x"]}}, meta={})
        store.claim_next()  # p0, left running
        store.delete_pending(["p2"])
        queue_before = store.queue()
        history_before = store.history()

    with PromptStore(db_path) as store:
        assert store.queue() == queue_before
        assert store.history() == history_before
        states = [store.state_of(i) for i in ("urgent", "p0", "p1", "p2")]
        assert states == ["success", "running", "pending", "cancelled"]


def test_closed_store_refuses_calls(db_path: Path) -> None:
    store = PromptStore(db_path)
    store.close()
    store.close()  # harmless
    with pytest.raises(StoreError, match="closed"):
        store.queue()


def test_recover_after_restart_interrupts_running_prompts(db_path: Path) -> None:
    with PromptStore(db_path) as store:
        for i in range(4):
            submit(store, f"p{i}", index=i)
        store.claim_next()
        store.claim_next()
    with PromptStore(db_path) as store:
        assert store.recover_after_restart() == ["p0", "p1"]
        assert store.recover_after_restart() == []
        assert store.state_of("p0") == "interrupted"
        entry = store.history_item("p0")["p0"]
        assert entry["outputs"] == {} and entry["meta"] == {}
        assert entry["status"] == {
            "status_str": "error",
            "completed": False,
            "messages": [
                [
                    "execution_interrupted",
                    {"prompt_id": "p0", "node_id": None, "node_type": None, "executed": [], "reason": RESTART_REASON},
                ]
            ],
        }
        running, pending = store.queue()
        assert running == [] and [item.prompt_id for item in pending] == ["p2", "p3"]
        assert store.queue_remaining() == 2


def test_corrupt_file_is_reported(db_path: Path) -> None:
    with PromptStore(db_path) as store:
        for i in range(300):  # enough rows for the index to own pages of its own
            submit(store, f"p{i}", index=i)
    with sqlite3.connect(db_path) as raw:
        root = raw.execute("SELECT rootpage FROM sqlite_master WHERE name = 'prompts_by_state_number'").fetchone()[0]
        page_size = raw.execute("PRAGMA page_size").fetchone()[0]
    raw.close()
    with open(db_path, "r+b") as handle:  # replace the index root with an empty leaf index page
        handle.seek((root - 1) * page_size)
        handle.write(b"\x0a" + bytes(page_size - 1))
    with PromptStore(db_path) as store, pytest.raises(StoreCorruptError, match="integrity_check"):
        store.recover_after_restart()


def test_file_that_is_not_a_database_is_reported(db_path: Path) -> None:
    db_path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open prompt store"):
        PromptStore(db_path)


# -- crash (kill -9) ----------------------------------------------------------------------------

CHILD_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from server.store import PromptStore

    db_path, graphs_path, finish_first = sys.argv[1], sys.argv[2], int(sys.argv[3])
    graphs = json.loads(Path(graphs_path).read_text())
    store = PromptStore(Path(db_path))
    store.recover_after_restart()
    for index, graph in enumerate(graphs):
        store.enqueue(f"job{index:02d}", store.next_number(), graph, {"client_id": "child"}, ["2"])
    for _ in range(finish_first):
        item = store.claim_next()
        store.finish(item.prompt_id, "success", messages=[["execution_success", {}]],
                     outputs={"2": {"images": [{"filename": item.prompt_id + ".png"}]}}, meta={})
    store.claim_next()
    print("READY", flush=True)
    time.sleep(600)
    """
)


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


@pytest.mark.parametrize("finish_first", [0, 2])
def test_sigkill_while_running_loses_nothing(tmp_path: Path, finish_first: int) -> None:
    db_path = tmp_path / "prompts.db"
    graphs = [graph(i) for i in range(20)]
    graphs_path = tmp_path / "graphs.json"
    graphs_path.write_text(json.dumps(graphs))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_SCRIPT, str(db_path), str(graphs_path), str(finish_first)],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "READY"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    running_id = f"job{finish_first:02d}"
    with PromptStore(db_path) as store:
        assert store.recover_after_restart() == [running_id]
        assert store.state_of(running_id) == "interrupted"
        assert store.history_item(running_id)[running_id]["status"]["status_str"] == "error"
        for index in range(finish_first):  # jobs finished before the crash keep their history
            entry = store.history_item(f"job{index:02d}")[f"job{index:02d}"]
            assert entry["status"]["completed"] is True
            assert entry["outputs"] == {"2": {"images": [{"filename": f"job{index:02d}.png"}]}}
        running, pending = store.queue()
        assert running == []
        assert [item.prompt_id for item in pending] == [f"job{i:02d}" for i in range(finish_first + 1, 20)]
        assert [item.prompt for item in pending] == graphs[finish_first + 1 :]
        assert [item.number for item in pending] == sorted(item.number for item in pending)
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    raw.close()


DURABILITY_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from server.store import PromptStore

    store = PromptStore(Path(sys.argv[1]))
    for index in range(100000):
        prompt_id = f"q{index:05d}"
        store.enqueue(prompt_id, store.next_number(), {"1": {"inputs": {"i": index}}}, {}, ["1"])
        print("E", prompt_id, flush=True)
        if index % 3 == 2:
            item = store.claim_next()
            print("C", item.prompt_id, flush=True)
            store.finish(item.prompt_id, "success", messages=[], outputs={}, meta={})
            print("F", item.prompt_id, flush=True)
    """
)


@pytest.mark.parametrize("seed", range(5))
def test_sigkill_at_random_points_keeps_every_acknowledged_prompt(tmp_path: Path, seed: int) -> None:
    """What `enqueue`, `claim_next` and `finish` acknowledged is on disk, whenever the process dies."""
    db_path = tmp_path / "prompts.db"
    stop_after = random.Random(seed).randrange(5, 120)
    child = subprocess.Popen(
        [sys.executable, "-c", DURABILITY_SCRIPT, str(db_path)], stdout=subprocess.PIPE, text=True, env=child_env()
    )
    acked: list[tuple[str, str]] = []
    try:
        assert child.stdout is not None
        while len(acked) < stop_after:
            kind, prompt_id = child.stdout.readline().split()
            acked.append((kind, prompt_id))
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)

    with PromptStore(db_path) as store:
        recovered = store.recover_after_restart()
        states = {prompt_id: store.state_of(prompt_id) for _, prompt_id in acked}
        enqueued = [prompt_id for kind, prompt_id in acked if kind == "E"]
        finished = {prompt_id for kind, prompt_id in acked if kind == "F"}
        claimed = {prompt_id for kind, prompt_id in acked if kind == "C"}
        assert all(state is not None for state in states.values())  # nothing acknowledged was lost
        assert all(states[prompt_id] == "success" for prompt_id in finished)
        assert all(states[prompt_id] in ("success", "interrupted") for prompt_id in claimed - finished)
        assert len(recovered) <= 1  # one worker: at most one prompt was mid-run
        running, pending = store.queue()
        assert running == []
        pending_ids = [item.prompt_id for item in pending]
        assert pending_ids == sorted(pending_ids)  # original order
        # At most one prompt beyond the acknowledged ones: committed, killed before the print.
        listed = set(pending_ids) | set(store.history())
        assert set(enqueued) <= listed and len(listed - set(enqueued)) <= 1
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    raw.close()


# -- model-based ------------------------------------------------------------------------------


class StoreMachine(RuleBasedStateMachine):
    """Random enqueue / claim / finish / cancel / reopen sequences against a plain-dict model."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="store-machine-"))
        self.db_path = self.directory / "prompts.db"
        self.store = PromptStore(self.db_path)
        self.states: dict[str, str] = {}
        self.order: dict[str, tuple[float, int]] = {}  # queue key: (number, submission index)

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def known(self, index: int) -> str:
        ids = sorted(self.states) + ["never-submitted"]
        return ids[index % len(ids)]

    def pending_in_order(self) -> list[str]:
        pending = [prompt_id for prompt_id, state in self.states.items() if state == "pending"]
        return sorted(pending, key=self.order.__getitem__)

    @rule(front=st.booleans())
    def enqueue(self, front: bool) -> None:
        prompt_id = f"p{len(self.states)}"
        number = self.store.next_number(front=front)
        self.store.enqueue(prompt_id, number, graph(len(self.states)), {}, ["2"])
        self.states[prompt_id] = "pending"
        self.order[prompt_id] = (number, len(self.order))

    @rule()
    def claim(self) -> None:
        expected = self.pending_in_order()
        item = self.store.claim_next()
        if not expected:
            assert item is None
            return
        assert item is not None and item.prompt_id == expected[0]
        self.states[item.prompt_id] = "running"

    @rule(index=st.integers(min_value=0, max_value=50), state=st.sampled_from(["success", "error", "interrupted"]))
    def finish(self, index: int, state: str) -> None:
        prompt_id = self.known(index)
        was_running = self.states.get(prompt_id) == "running"
        finished = self.store.finish(prompt_id, state, messages=[], outputs={}, meta={})  # type: ignore[arg-type]
        assert finished is was_running
        if was_running:
            self.states[prompt_id] = state

    @rule(index=st.integers(min_value=0, max_value=50))
    def cancel(self, index: int) -> None:
        prompt_id = self.known(index)
        was_pending = self.states.get(prompt_id) == "pending"
        assert self.store.delete_pending([prompt_id]) == ([prompt_id] if was_pending else [])
        if was_pending:
            self.states[prompt_id] = "cancelled"

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = PromptStore(self.db_path)
        running = sorted(prompt_id for prompt_id, state in self.states.items() if state == "running")
        assert sorted(self.store.recover_after_restart()) == running
        for prompt_id in running:
            self.states[prompt_id] = "interrupted"

    @invariant()
    def every_prompt_is_in_exactly_its_model_state(self) -> None:
        for prompt_id, state in self.states.items():
            assert self.store.state_of(prompt_id) == state
        running, pending = self.store.queue()
        running_ids = [item.prompt_id for item in running]
        pending_ids = [item.prompt_id for item in pending]
        history_ids = list(self.store.history())
        listings = running_ids + pending_ids + history_ids
        assert len(listings) == len(set(listings))  # no prompt listed twice
        assert sorted(running_ids) == sorted(p for p, s in self.states.items() if s == "running")
        assert pending_ids == self.pending_in_order()
        finished = sorted(p for p, s in self.states.items() if s in ("success", "error", "interrupted"))
        assert sorted(history_ids) == finished

    @invariant()
    def queue_remaining_matches_model(self) -> None:
        expected = sum(state in ("pending", "running") for state in self.states.values())
        assert self.store.queue_remaining() == expected


StoreMachine.TestCase.settings = settings(
    max_examples=50, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_store_state_machine = StoreMachine.TestCase
