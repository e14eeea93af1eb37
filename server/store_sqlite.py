"""The SQLite side of the prompt store: schema, connection settings and row encoding.

This module owns what `server/store.py`'s `PromptStore` keeps on disk and how: the prompt
states and the `prompts` table that records them (`SCHEMA_VERSION`, kept in `PRAGMA
user_version`), how a connection is opened and configured (WAL, `synchronous=FULL`, a refusal
to open a file written by a newer Flowmill), the single-row updates that move a prompt between
states, and the encoding of values to and from rows: `QueueItem` and ComfyUI's history-entry
shape, JSON columns, and dropping the sensitive `extra_data` keys before they reach the file.
Queue order, locking, transactions and pruning are `PromptStore`'s job, not this module's;
`server/store.py` re-exports the public names defined here, and importers should keep using it.

Standard library only: this module must not import torch, aiohttp or `server.store` (which
imports it), and holds no module-level mutable state.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

# ComfyUI splits these out of extra_data before queueing; the server does the same, and the
# store drops them again so an API key can never reach the file, /queue or /history.
SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")

PromptState = Literal["pending", "running", "success", "error", "interrupted", "cancelled"]
FinishState = Literal["success", "error", "interrupted"]

PENDING: PromptState = "pending"
RUNNING: PromptState = "running"
SUCCESS: PromptState = "success"
ERROR: PromptState = "error"
INTERRUPTED: PromptState = "interrupted"
CANCELLED: PromptState = "cancelled"

ALL_STATES: frozenset[str] = frozenset({PENDING, RUNNING, SUCCESS, ERROR, INTERRUPTED, CANCELLED})
# States that own a history entry. Cancelled prompts never ran, so (as in ComfyUI, which
# simply drops them from the heap) they are not history; their row stays as a tombstone so
# `state_of` can still answer "cancelled".
HISTORY_STATES: frozenset[str] = frozenset({SUCCESS, ERROR, INTERRUPTED})
TERMINAL_STATES: frozenset[str] = HISTORY_STATES | {CANCELLED}

SCHEMA_VERSION = 1
RESTART_REASON = "server restarted while this prompt was running"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS prompts (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,  -- insertion order, breaks number ties
    prompt_id          TEXT    NOT NULL UNIQUE,
    number             REAL    NOT NULL,
    prompt             TEXT    NOT NULL,
    extra_data         TEXT    NOT NULL,
    outputs_to_execute TEXT    NOT NULL,
    state              TEXT    NOT NULL CHECK (state IN
        ('pending', 'running', 'success', 'error', 'interrupted', 'cancelled')),
    created            REAL    NOT NULL,
    updated            REAL    NOT NULL,
    finished_seq       INTEGER UNIQUE,  -- order of reaching a terminal state: history order
    messages           TEXT,
    outputs            TEXT,
    meta               TEXT
);
CREATE INDEX IF NOT EXISTS prompts_by_state_number ON prompts (state, number, seq);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT    PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO counters (name, value) VALUES ('number', 0);
"""

_ITEM_COLUMNS = "number, prompt_id, prompt, extra_data, outputs_to_execute"
_ENTRY_COLUMNS = f"{_ITEM_COLUMNS}, state, messages, outputs, meta"
_HISTORY_IN = "('success', 'error', 'interrupted')"


class StoreError(RuntimeError):
    """The prompt store file cannot be opened or used."""


@dataclass(frozen=True)
class QueueItem:
    """One queued or running prompt, as ComfyUI's `/queue` lists it (without secrets)."""

    number: float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs_to_execute: list[str]

    def as_comfy_tuple(self) -> list[Any]:
        """`[number, prompt_id, prompt, extra_data, outputs_to_execute]`, ComfyUI's queue item."""
        return [_wire_number(self.number), self.prompt_id, self.prompt, self.extra_data, self.outputs_to_execute]


# -- connection setup ------------------------------------------------------------------------


def _open_connection(db_path: Path) -> sqlite3.Connection:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: the module issues BEGIN/COMMIT itself (see PromptStore._write).
    conn = sqlite3.connect(str(db_path), check_same_thread=False, isolation_level=None, timeout=30.0)
    try:
        _configure(conn, db_path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"cannot open prompt store {db_path}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _configure(conn: sqlite3.Connection, db_path: Path) -> None:
    conn.row_factory = sqlite3.Row
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(
            f"prompt store {db_path}: SQLite refused WAL journal mode (got {mode!r}); is it on a network filesystem?"
        )
    # FULL fsyncs the WAL on every commit: with NORMAL a power loss can drop recently
    # accepted prompts, which is the failure this store exists to prevent.
    conn.execute("PRAGMA synchronous=FULL")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"prompt store {db_path} has schema version {version}; this Flowmill understands up to {SCHEMA_VERSION}"
        )
    conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")


# -- row helpers -----------------------------------------------------------------------------


def _transition(conn: sqlite3.Connection, prompt_id: str, source: PromptState, target: PromptState) -> bool:
    """Move one row from `source` to `target`; False when it is not in `source`."""
    cursor = conn.execute(
        "UPDATE prompts SET state = ?, updated = ?, finished_seq = ? WHERE prompt_id = ? AND state = ?",
        (target, time.time(), _next_finished_seq(conn) if target in TERMINAL_STATES else None, prompt_id, source),
    )
    return cursor.rowcount == 1


def _finish_encoded(conn: sqlite3.Connection, prompt_id: str, state: FinishState, encoded: dict[str, str]) -> bool:
    cursor = conn.execute(
        "UPDATE prompts SET state = ?, updated = ?, finished_seq = ?, messages = ?, outputs = ?, meta = ?"
        " WHERE prompt_id = ? AND state = 'running'",
        (
            state,
            time.time(),
            _next_finished_seq(conn),
            encoded["messages"],
            encoded["outputs"],
            encoded["meta"],
            prompt_id,
        ),
    )
    return cursor.rowcount == 1


def _encode_result(messages: list[list[Any]], outputs: dict[str, Any], meta: dict[str, Any]) -> dict[str, str]:
    # Encoded before the lock is taken, so a bad value fails without holding up other threads.
    return {"messages": _dump(messages, "messages"), "outputs": _dump(outputs, "outputs"), "meta": _dump(meta, "meta")}


def _restart_message(prompt_id: str) -> list[Any]:
    data = {"prompt_id": prompt_id, "node_id": None, "node_type": None, "executed": [], "reason": RESTART_REASON}
    return ["execution_interrupted", data]


def _next_finished_seq(conn: sqlite3.Connection) -> int:
    # Only called inside a write transaction, so no other writer can take the same value.
    return conn.execute("SELECT COALESCE(MAX(finished_seq), 0) + 1 FROM prompts").fetchone()[0]


def _queue_item(row: sqlite3.Row) -> QueueItem:
    return QueueItem(
        number=row["number"],
        prompt_id=row["prompt_id"],
        prompt=json.loads(row["prompt"]),
        extra_data=json.loads(row["extra_data"]),
        outputs_to_execute=json.loads(row["outputs_to_execute"]),
    )


def _history_entry(row: sqlite3.Row) -> dict[str, Any]:
    succeeded = row["state"] == SUCCESS
    return {
        "prompt": _queue_item(row).as_comfy_tuple(),
        "outputs": json.loads(row["outputs"]),
        # ComfyUI has only success/error: an interrupted prompt is an error that did not complete.
        "status": {
            "status_str": "success" if succeeded else "error",
            "completed": succeeded,
            "messages": json.loads(row["messages"]),
        },
        "meta": json.loads(row["meta"]),
    }


# -- value helpers ---------------------------------------------------------------------------


def _wire_number(number: float) -> float | int:
    # ComfyUI's server-assigned numbers are ints on the wire ([3, "id", ...]); keep that look
    # for clients that print or compare them, while client-given fractional numbers stay floats.
    return int(number) if number.is_integer() else number


def _without_sensitive(extra_data: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in extra_data.items() if key not in SENSITIVE_EXTRA_DATA_KEYS}


def _dump(value: Any, field: str) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"prompt store: {field} must be JSON-serialisable: {exc}") from exc


def _check_prompt_id(prompt_id: object) -> None:
    if not isinstance(prompt_id, str) or not prompt_id:
        raise ValueError(f"prompt_id must be a non-empty string, got {prompt_id!r}")


def _unique_ids(prompt_ids: Iterable[str]) -> list[str]:
    # A bare string is iterable too; cancelling its characters one by one would be a silent bug.
    if isinstance(prompt_ids, str | bytes):
        raise TypeError(f"expected a collection of prompt ids, got the single string {prompt_ids!r}")
    return list(dict.fromkeys(prompt_ids))


def _check_messages(messages: Sequence[Sequence[Any]]) -> list[list[Any]]:
    checked: list[list[Any]] = []
    for index, message in enumerate(messages):
        if isinstance(message, str | bytes) or len(message) != 2 or not isinstance(message[0], str):
            raise ValueError(f"messages[{index}] must be an [event, data] pair with a string event, got {message!r}")
        checked.append([message[0], message[1]])
    return checked
