"""One server per queue database: an exclusive lock file next to the SQLite file, naming its holder.

Two servers started from the same folder would share `user/flowmill-queue.sqlite3` and run each
other's prompts. `hold_queue_lock` takes an exclusive `flock` on `<database>.lock` and writes the
holder's pid into it; a second server finds the lock taken and is refused with that pid. The
kernel drops the lock when the process ends, however it ends, so a crash leaves no stale lock:
the pid left in the file is only read while someone still holds the lock.

Standard library only; no module-level mutable state (the open lock file is returned to the
caller, who keeps it for the life of the process).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # Windows: msvcrt.locking below
    fcntl = None  # type: ignore[assignment]


class QueueInUseError(RuntimeError):
    """Another live process holds the queue database."""


def lock_path_for(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


def _try_lock(handle: IO[str]) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            import msvcrt

            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def hold_queue_lock(database: Path) -> IO[str]:
    """Lock `database` for this process; keep the returned file open for as long as the server runs.

    Raises QueueInUseError naming the holder's pid when a live process already holds it.
    """
    path = lock_path_for(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    # "a+" creates the file without truncating it: the holder's pid must survive our failed try.
    handle = open(path, "a+", encoding="ascii")  # noqa: SIM115 - the caller keeps it open
    if not _try_lock(handle):
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise QueueInUseError(
            f"the queue database {database.name} in {database.parent} is in use by another Flowmill "
            f"server (pid {holder}); stop that server, or start this one with a different --user-dir"
        )
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
