"""One server per queue database (issue 13 §1): a second server on the same folder is refused,
naming the first one's pid; `--user-dir` gives each server its own queue; a crash leaves no lock."""

from __future__ import annotations

import urllib.error
import uuid
from pathlib import Path

import pytest

from tests.api.conftest import MINIMAL_CANVAS
from tests.api.server_process import ServerProcess


def _queue_one(server: ServerProcess) -> str:
    prompt_id = uuid.uuid4().hex
    server.post("/prompt", {"prompt": MINIMAL_CANVAS, "prompt_id": prompt_id})
    return prompt_id


def test_a_second_server_on_the_same_queue_exits_naming_the_first(tmp_path: Path) -> None:
    first = ServerProcess(tmp_path).start()
    try:
        second = ServerProcess(tmp_path)
        with pytest.raises(RuntimeError) as refused:
            second.start()
        assert second.process is not None and second.process.returncode == 2
        message = str(refused.value)
        assert f"pid {first.process.pid}" in message and "--user-dir" in message
        assert "flowmill-queue.sqlite3" in message
        assert first.get("/queue") == {"queue_running": [], "queue_pending": []}  # the first one is untouched
    finally:
        first.stop()


def test_servers_with_their_own_user_dirs_run_side_by_side(tmp_path: Path) -> None:
    first = ServerProcess(tmp_path, extra_args=["--user-dir", str(tmp_path / "alice")]).start()
    try:
        second = ServerProcess(tmp_path, extra_args=["--user-dir", str(tmp_path / "bob")]).start()
        try:
            prompt_id = _queue_one(first)
            assert (tmp_path / "alice" / "flowmill-queue.sqlite3").is_file()
            assert (tmp_path / "bob" / "flowmill-queue.sqlite3").is_file()
            assert not (tmp_path / "user" / "flowmill-queue.sqlite3").exists()
            assert first.get(f"/jobs/{prompt_id}")["status"] != "not_found"
            with pytest.raises(urllib.error.HTTPError) as unknown:  # bob's queue never saw it
                second.get(f"/jobs/{prompt_id}")
            assert unknown.value.code == 404
        finally:
            second.stop()
    finally:
        first.stop()


def test_a_crashed_server_leaves_no_lock_behind(tmp_path: Path) -> None:
    crashed = ServerProcess(tmp_path).start()
    crashed.kill()  # SIGKILL: no cleanup runs
    successor = ServerProcess(tmp_path).start()
    try:
        lock = tmp_path / "user" / "flowmill-queue.sqlite3.lock"
        assert lock.read_text().strip() == str(successor.process.pid)
    finally:
        successor.stop()
