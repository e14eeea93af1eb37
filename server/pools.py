"""The server's thread pools: control routes never wait in line behind file work.

Blocking work runs off the event loop, but one shared pool lets eight big `/view` previews occupy
every thread while `/queue` waits for one (security.md §4, "Many clients"). So each kind of work
has its own pool:

- `control`: SQLite store calls and system stats, which the canvas polls and which must stay fast;
- `files`: path checks, stats, reads and writes for `/view` and uploads: quick, so a thumbnail
  or an already cached preview never queues behind a decode;
- `images`: Pillow decoding and encoding (previews, upload checks, masks). It is small on
  purpose: each 9000x9000 decode holds ~300 MB, so its size also bounds peak memory. Its threads
  run at a lower CPU priority where the OS allows it (Linux), so on a small machine the event
  loop is scheduled first and a control request does not wait for a decode's time slice;
- everything else (validation, listings, workflow files) stays on the loop's default pool.

The pools are built per app by `create_app` and shut down with it; nothing here is global.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
CONTROL_THREADS = 4
FILE_THREADS = 4
IMAGE_THREAD_NICENESS = 10


def image_threads() -> int:
    """Half the CPUs, 1 to 4: leaves a core for the loop and the worker, and bounds decode memory."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


@dataclass(frozen=True)
class Pools:
    control: ThreadPoolExecutor
    files: ThreadPoolExecutor
    images: ThreadPoolExecutor

    @classmethod
    def create(cls) -> Pools:
        return cls(control=ThreadPoolExecutor(CONTROL_THREADS, thread_name_prefix="flowmill-control"),
                   files=ThreadPoolExecutor(FILE_THREADS, thread_name_prefix="flowmill-files"),
                   images=ThreadPoolExecutor(image_threads(), thread_name_prefix="flowmill-images",
                                             initializer=_lower_thread_priority))

    def shutdown(self) -> None:
        for pool in (self.control, self.files, self.images):
            pool.shutdown(wait=False, cancel_futures=True)


def _lower_thread_priority() -> None:
    """Nice the calling thread by IMAGE_THREAD_NICENESS (Linux schedules threads one by one)."""
    if not sys.platform.startswith("linux"):
        return  # elsewhere PRIO_PROCESS takes a process id, never a thread's
    try:
        native_id = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, native_id, os.getpriority(os.PRIO_PROCESS, native_id) + IMAGE_THREAD_NICENESS)
    except (AttributeError, OSError):
        pass  # not Linux, or not permitted: the pool still bounds the work, only without the priority hint


async def run_on(pool: ThreadPoolExecutor, function: Callable[..., T], *args: Any) -> T:
    """Run blocking `function(*args)` on `pool` and await its result."""
    return await asyncio.get_running_loop().run_in_executor(pool, function, *args)
