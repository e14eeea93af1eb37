"""Answer at once, load nodes in the background: the server's start-up order.

Importing every node module (and diffusers with them) is the slow part of `python main.py`.
`serve` binds the port and serves the page first, while `NodeLoading` fills the runtime's registry
on a background thread. `nodes_gate` holds back every request except the page and its static
files until the registry is complete, so no handler ever sees a half-filled registry, and the app
starts the prompt worker only once loading has finished. A loading failure is logged and answered
with 503 naming it; the page still loads, so the user sees the error instead of a dead port.

Uses aiohttp and the standard library only. No module-level mutable state.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
from collections.abc import Awaitable, Callable

from aiohttp import web

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class NodeLoading:
    """The node registry being filled on a background thread (or already complete)."""

    def __init__(self, load: Callable[[], None] | None = None) -> None:
        self._done: concurrent.futures.Future[None] = concurrent.futures.Future()
        # Running futures cannot be cancelled: a client that disconnects while waiting cancels
        # its own wait (asyncio.wrap_future passes the cancel on), never the loading itself.
        self._done.set_running_or_notify_cancel()
        if load is None:
            self._done.set_result(None)
        else:
            threading.Thread(target=self._run, args=(load,), name="flowmill-node-loading", daemon=True).start()

    def _run(self, load: Callable[[], None]) -> None:
        try:
            load()
        except BaseException as error:  # reported to every waiting request, and logged once here
            log.exception("loading the nodes failed")
            self._done.set_exception(error)
        else:
            self._done.set_result(None)

    @property
    def ready(self) -> bool:
        return self._done.done() and self._done.exception() is None

    async def wait(self) -> None:
        """Return once the registry is complete; raise the loading error if it failed."""
        if not self.ready:
            await asyncio.wrap_future(self._done)


def _needs_nodes(request: web.Request) -> bool:
    """Everything but the page and its static files may read the registry (or wake the worker)."""
    if request.method not in ("GET", "HEAD"):
        return True
    resource = request.match_info.route.resource
    return not (request.path == "/" or isinstance(resource, web.StaticResource))


def nodes_gate(loading: NodeLoading) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Middleware: hold requests that need the registry until it is loaded."""

    @web.middleware
    async def wait_for_nodes(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not loading.ready and _needs_nodes(request):
            try:
                await loading.wait()
            except Exception as error:
                message = f"the server could not load its nodes ({type(error).__name__}: {error}); see its log"
                return web.Response(status=503, text=json.dumps({"error": message}), content_type="application/json")
        return await handler(request)

    return wait_for_nodes
