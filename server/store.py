"""The persistent prompt queue and prompt history, kept in one SQLite file.

This module owns every prompt the server has accepted, from `POST /prompt` until its
history entry is deleted or pruned: the queue order (ComfyUI's `number`, lower runs first),
the state of each prompt (`pending`, `running`, then exactly one terminal state), and the
history entries that `GET /history` serves in ComfyUI's JSON shape (comfyui-compat.md
§11.1-11.3). ComfyUI keeps both in memory and loses them on a crash; here an accepted
prompt is committed with `synchronous=FULL` before `enqueue` returns, and after a restart
`recover_after_restart` reports the prompt that was running as `interrupted` instead of
losing it or re-running it (security.md §1.9, §4).

One `PromptStore` is shared by the aiohttp loop's thread pool and the worker thread: a
single connection guarded by a lock serialises all access, and every read-modify-write runs
in a `BEGIN IMMEDIATE` transaction, so claims and cancels are atomic. Callers on the event
loop must call it through an executor (it blocks on disk). The schema, connection settings
and row encoding live in server/store_sqlite.py; this module re-exports its public names.
This module must not import torch or aiohttp, and holds no module-level mutable state.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from server.store_sqlite import (
    _ENTRY_COLUMNS,
    _HISTORY_IN,
    _ITEM_COLUMNS,
    ALL_STATES,
    CANCELLED,
    ERROR,
    HISTORY_STATES,
    INTERRUPTED,
    PENDING,
    RESTART_REASON,
    RUNNING,
    SCHEMA_VERSION,
    SENSITIVE_EXTRA_DATA_KEYS,
    SUCCESS,
    TERMINAL_STATES,
    FinishState,
    PromptState,
    QueueItem,
    StoreError,
    _check_messages,
    _check_prompt_id,
    _dump,
    _encode_result,
    _finish_encoded,
    _history_entry,
    _open_connection,
    _queue_item,
    _restart_message,
    _transition,
    _unique_ids,
    _without_sensitive,
)

# The store's public API. The states, QueueItem, StoreError and the schema constants are
# defined in server/store_sqlite.py (its schema and row codecs need them) and re-exported here.
__all__ = [
    "ALL_STATES", "CANCELLED", "DEFAULT_MAX_HISTORY", "ERROR", "HISTORY_STATES", "INTERRUPTED", "PENDING",
    "RESTART_REASON", "RUNNING", "SCHEMA_VERSION", "SENSITIVE_EXTRA_DATA_KEYS", "SUCCESS", "TERMINAL_STATES",
    "FinishState", "PromptState", "PromptStore", "QueueItem", "StoreCorruptError", "StoreError",
]

DEFAULT_MAX_HISTORY = 10_000  # ComfyUI's MAXIMUM_HISTORY_SIZE


class StoreCorruptError(StoreError):
    """`PRAGMA integrity_check` found damage in the prompt store file."""


class PromptStore:
    """SQLite-backed prompt queue and history; safe to share between threads."""

    def __init__(self, db_path: Path, *, max_history: int = DEFAULT_MAX_HISTORY) -> None:
        if max_history < 1:
            raise ValueError(f"max_history must be at least 1, got {max_history}")
        self.db_path = Path(db_path)
        self.max_history = max_history
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = _open_connection(self.db_path)

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection; later calls raise StoreError. Closing twice is harmless."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> PromptStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def recover_after_restart(self) -> list[str]:
        """Check the file, then mark every `running` prompt `interrupted`; return their ids.

        Call once at start-up, before the worker claims anything. A prompt that was running
        when the process died is neither re-run silently nor lost: it gets a history entry
        with status "error" and an `execution_interrupted` message. Pending prompts keep
        their numbers, so they resume in their original order.
        """
        self._check_integrity()
        with self._write() as conn:
            ids = [row[0] for row in conn.execute("SELECT prompt_id FROM prompts WHERE state = 'running' ORDER BY seq")]
            for prompt_id in ids:
                encoded = _encode_result([_restart_message(prompt_id)], outputs={}, meta={})
                _finish_encoded(conn, prompt_id, INTERRUPTED, encoded)
            self._prune(conn)
        return ids

    # -- queue ---------------------------------------------------------------------------

    def next_number(self, front: bool = False) -> float:
        """Allocate the next queue number: increasing, or its negative when `front` is set.

        As in ComfyUI, a front prompt gets minus the counter, so it runs before every normal
        prompt and before earlier front prompts. The counter is persisted so numbers keep
        increasing across restarts and recovered pending prompts keep their place.
        """
        with self._write() as conn:
            conn.execute("UPDATE counters SET value = value + 1 WHERE name = 'number'")
            value = conn.execute("SELECT value FROM counters WHERE name = 'number'").fetchone()[0]
        return float(-value if front else value)

    def enqueue(
        self,
        prompt_id: str,
        number: float,
        prompt: Mapping[str, Any],
        extra_data: Mapping[str, Any],
        outputs_to_execute: Sequence[str],
    ) -> None:
        """Add a pending prompt; it is committed to disk before this returns.

        Raises ValueError for a duplicate `prompt_id` (in any state, including finished and
        cancelled ones still on record) or a non-finite number, TypeError for values that
        are not JSON-serialisable.
        """
        _check_prompt_id(prompt_id)
        number = float(number)
        if not math.isfinite(number):
            raise ValueError(f"queue number must be finite, got {number!r} for prompt {prompt_id!r}")
        now = time.time()
        row = (
            prompt_id,
            number,
            _dump(dict(prompt), "prompt"),
            _dump(_without_sensitive(extra_data), "extra_data"),
            _dump(list(outputs_to_execute), "outputs_to_execute"),
            now,
            now,
        )
        with self._write() as conn:
            try:
                conn.execute(
                    "INSERT INTO prompts (prompt_id, number, prompt, extra_data, outputs_to_execute,"
                    " state, created, updated) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
                    row,
                )
            except sqlite3.IntegrityError as exc:
                raise ValueError(f"prompt_id {prompt_id!r} is already in the queue or history") from exc

    def claim_next(self) -> QueueItem | None:
        """Atomically move the pending prompt with the lowest number to `running` and return it.

        Ties on number go to the prompt enqueued first. Returns None when nothing is pending.
        Two threads never claim the same prompt: select and update share one write transaction.
        """
        with self._write() as conn:
            row = conn.execute(
                f"SELECT {_ITEM_COLUMNS} FROM prompts WHERE state = 'pending' ORDER BY number, seq LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE prompts SET state = 'running', updated = ? WHERE prompt_id = ?", (time.time(), row["prompt_id"])
            )
        return _queue_item(row)

    def queue(self) -> tuple[list[QueueItem], list[QueueItem]]:
        """`(running, pending)`, each sorted by number: what `GET /queue` lists."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT state, {_ITEM_COLUMNS} FROM prompts WHERE state IN ('running', 'pending') ORDER BY number, seq"
            ).fetchall()
        running = [_queue_item(row) for row in rows if row["state"] == RUNNING]
        pending = [_queue_item(row) for row in rows if row["state"] == PENDING]
        return running, pending

    def queue_remaining(self) -> int:
        """Pending plus running prompts: ComfyUI's `exec_info.queue_remaining`."""
        with self._read() as conn:
            return conn.execute("SELECT COUNT(*) FROM prompts WHERE state IN ('running', 'pending')").fetchone()[0]

    def delete_pending(self, prompt_ids: Iterable[str]) -> list[str]:
        """Cancel the given prompts that are still pending; return the ids actually cancelled.

        Running, finished, already-cancelled and unknown ids are skipped, which makes cancel
        idempotent: of several callers racing to cancel one prompt (or a cancel racing the
        worker's claim), exactly one wins. Cancelled prompts leave the queue and do not
        appear in history; `state_of` reports them as "cancelled".
        """
        wanted = _unique_ids(prompt_ids)
        cancelled: list[str] = []
        with self._write() as conn:
            for prompt_id in wanted:
                if _transition(conn, prompt_id, PENDING, CANCELLED):
                    cancelled.append(prompt_id)
            self._prune(conn)
        return cancelled

    def clear_pending(self) -> list[str]:
        """Cancel every pending prompt (ComfyUI's `POST /queue {clear: true}`); return their ids in queue order."""
        with self._write() as conn:
            query = "SELECT prompt_id FROM prompts WHERE state = 'pending' ORDER BY number, seq"
            ids = [row[0] for row in conn.execute(query)]
            for prompt_id in ids:
                _transition(conn, prompt_id, PENDING, CANCELLED)
            self._prune(conn)
        return ids

    # -- finishing -------------------------------------------------------------------------

    def finish(
        self,
        prompt_id: str,
        state: FinishState,
        *,
        messages: Sequence[Sequence[Any]] | None = None,
        outputs: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> bool:
        """Move a running prompt to success, error or interrupted and write its history entry.

        `messages` is the list of `[event, data]` pairs ComfyUI keeps in `status.messages`,
        `outputs` maps node id to its ui dict, `meta` maps node id to
        `{node_id, display_node, parent_node, real_node_id}`. Returns False, changing
        nothing, when the prompt is not running (unknown, pending, or already terminal):
        terminal states are final.
        """
        if state not in HISTORY_STATES:
            raise ValueError(f"finish() state must be one of {sorted(HISTORY_STATES)}, got {state!r}")
        encoded = _encode_result(_check_messages(messages or []), dict(outputs or {}), dict(meta or {}))
        with self._write() as conn:
            if not _finish_encoded(conn, prompt_id, state, encoded):
                return False
            self._prune(conn)
        return True

    # -- history ---------------------------------------------------------------------------

    def history(self, max_items: int | None = None, offset: int | None = None) -> dict[str, Any]:
        """History entries, oldest first, in ComfyUI's `GET /history` shape.

        Paging mirrors ComfyUI's `PromptQueue.get_history`, counting in the order prompts
        finished:
        - no `offset` (None or negative, ComfyUI's default is -1) and no `max_items`: all entries;
        - no `offset`, `max_items=n`: the most recent n entries;
        - `offset=k` (k >= 0): skip the k oldest entries, then return up to `max_items`
          (all the rest when None).
        `max_items <= 0` returns `{}` (ComfyUI returns one entry for 0 with an explicit
        offset, an off-by-one we do not copy).
        """
        if max_items is not None and max_items <= 0:
            return {}
        with self._read() as conn:
            if offset is None or offset < 0:
                rows = self._newest_history_rows(conn, max_items)
            else:
                limit = -1 if max_items is None else max_items  # LIMIT -1 means no limit in SQLite
                rows = conn.execute(
                    f"SELECT {_ENTRY_COLUMNS} FROM prompts WHERE state IN {_HISTORY_IN}"
                    " ORDER BY finished_seq LIMIT ? OFFSET ?",
                    (limit, offset),
                ).fetchall()
        return {row["prompt_id"]: _history_entry(row) for row in rows}

    def history_item(self, prompt_id: str) -> dict[str, Any]:
        """`{prompt_id: entry}` for one finished prompt, `{}` when it has no history entry."""
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM prompts WHERE prompt_id = ? AND state IN {_HISTORY_IN}", (prompt_id,)
            ).fetchone()
        return {} if row is None else {prompt_id: _history_entry(row)}

    def state_of(self, prompt_id: str) -> PromptState | None:
        """The prompt's state, or None when the id was never accepted (or its record was deleted).

        Lets a client that polls an id tell "still queued", "interrupted by a restart" and
        "cancelled" apart instead of reading a missing history entry as "done".
        """
        with self._read() as conn:
            row = conn.execute("SELECT state FROM prompts WHERE prompt_id = ?", (prompt_id,)).fetchone()
        return None if row is None else row[0]

    def record(self, prompt_id: str) -> tuple[PromptState, QueueItem, dict[str, Any] | None] | None:
        """A prompt in any state: (state, queue item, history entry or None); None for an unknown id.

        One read, so the three agree. The jobs API's single-job lookup uses it, including for
        cancelled prompts, whose queue item outlives them as a tombstone.
        """
        with self._read() as conn:
            row = conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM prompts WHERE prompt_id = ?", (prompt_id,)).fetchone()
        if row is None:
            return None
        entry = _history_entry(row) if row["state"] in HISTORY_STATES else None
        return row["state"], _queue_item(row), entry

    def delete_history(self, prompt_ids: Iterable[str]) -> list[str]:
        """Delete the history entries of the given ids; return those deleted.

        Only finished prompts are touched: pending and running prompts stay queued.
        """
        wanted = _unique_ids(prompt_ids)
        deleted: list[str] = []
        with self._write() as conn:
            for prompt_id in wanted:
                cursor = conn.execute(
                    f"DELETE FROM prompts WHERE prompt_id = ? AND state IN {_HISTORY_IN}", (prompt_id,)
                )
                if cursor.rowcount == 1:
                    deleted.append(prompt_id)
        return deleted

    def clear_history(self) -> list[str]:
        """Delete every history entry (ComfyUI's `POST /history {clear: true}`); return the ids, oldest first."""
        with self._write() as conn:
            query = f"SELECT prompt_id FROM prompts WHERE state IN {_HISTORY_IN} ORDER BY finished_seq"
            ids = [row[0] for row in conn.execute(query)]
            conn.execute(f"DELETE FROM prompts WHERE state IN {_HISTORY_IN}")
        return ids

    # -- internals -----------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._connection()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed (and, with synchronous=FULL, fsynced) on exit."""
        with self._lock:
            conn = self._connection()
            # IMMEDIATE takes the write lock up front, so a select-then-update is atomic even
            # against another process that (wrongly) opened the same file.
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"prompt store {self.db_path} is closed")
        return self._conn

    def _check_integrity(self) -> None:
        with self._read() as conn:
            try:
                problems = [str(row[0]) for row in conn.execute("PRAGMA integrity_check")]
            except sqlite3.DatabaseError as exc:
                # Damage bad enough that SQLite cannot even walk the b-tree raises instead of
                # returning rows ("database disk image is malformed").
                problems = [str(exc)]
        if problems != ["ok"]:
            raise StoreCorruptError(
                f"prompt store {self.db_path} failed PRAGMA integrity_check: {'; '.join(problems[:10])}. "
                "Stop the server and move the file (with its -wal and -shm files) aside to start "
                "with an empty queue and history."
            )

    def _newest_history_rows(self, conn: sqlite3.Connection, max_items: int | None) -> list[sqlite3.Row]:
        if max_items is None:
            return conn.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM prompts WHERE state IN {_HISTORY_IN} ORDER BY finished_seq"
            ).fetchall()
        newest_first = conn.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM prompts WHERE state IN {_HISTORY_IN} ORDER BY finished_seq DESC LIMIT ?",
            (max_items,),
        ).fetchall()
        return newest_first[::-1]

    def _prune(self, conn: sqlite3.Connection) -> None:
        """Keep at most `max_history` history entries and as many cancelled tombstones.

        The two are capped separately so that clearing a long queue cannot evict history.
        """
        for states in (_HISTORY_IN, "('cancelled')"):
            conn.execute(
                f"DELETE FROM prompts WHERE seq IN (SELECT seq FROM prompts WHERE state IN {states}"
                " ORDER BY finished_seq DESC LIMIT -1 OFFSET ?)",
                (self.max_history,),
            )
