"""Converted `/view` previews: a byte-bounded cache, and one conversion per file at a time.

A gallery asks for the same `preview=jpeg;90` of a file from several tabs and on every redraw;
decoding a 9000x9000 PNG takes a second and ~300 MB. `PreviewCache` keeps recent results (keyed
by the file's real path, size and modification time, so an overwritten file is converted again)
up to `max_bytes` in total, and requests for a conversion already running share it instead of
starting their own. Errors are passed to every waiter and never cached.

Event-loop only (no locks): all methods run on the loop; the conversion itself is the caller's
coroutine, which runs the blocking work on the file pool.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable

MIB = 1024 * 1024
Preview = tuple[bytes, str]  # (encoded image, Pillow format name)


class PreviewCache:
    def __init__(self, max_bytes: int = 64 * MIB, max_entry_bytes: int = 16 * MIB) -> None:
        self.max_bytes = max_bytes
        self.max_entry_bytes = min(max_entry_bytes, max_bytes)
        self._entries: OrderedDict[Hashable, Preview] = OrderedDict()
        self._size = 0
        self._running: dict[Hashable, asyncio.Future[Preview]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """Bytes held by cached previews."""
        return self._size

    async def get(self, key: Hashable, convert: Callable[[], Awaitable[Preview]]) -> Preview:
        """The cached preview for `key`, else the result of `convert()` (shared while it runs)."""
        cached = self._entries.get(key)
        if cached is not None:
            self._entries.move_to_end(key)
            return cached
        running = self._running.get(key)
        if running is None:
            # A task of its own: a client that disconnects cancels its wait, not the conversion.
            running = asyncio.ensure_future(convert())
            self._running[key] = running
            running.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(running)

    def _finished(self, key: Hashable, done: asyncio.Future[Preview]) -> None:
        self._running.pop(key, None)
        if done.cancelled() or done.exception() is not None:
            return
        self._store(key, done.result())

    def _store(self, key: Hashable, preview: Preview) -> None:
        size = len(preview[0])
        if size > self.max_entry_bytes or key in self._entries:
            return
        self._entries[key] = preview
        self._size += size
        while self._size > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._size -= len(evicted[0])
