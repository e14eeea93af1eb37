"""The aiohttp application factory and `serve`.

`create_app` wires the runtime (registry, executor, folders) to ComfyUI's routes, each
mounted both bare and under `/api`, behind the security middleware. A cleanup context
recovers the persistent queue (a prompt that was running when the process died is marked
interrupted, never silently re-run), starts the single worker thread, and on shutdown
closes the websockets, stops the worker and closes the store. `serve` first locks the queue
database (one server per queue, server/queue_lock.py), then answers while the nodes still load
(server/startup.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from engine.media import remove_stale_temp_files
from engine.paths import Folders
from engine.runtime import Runtime
from server.appkeys import HUB, NODES, POOLS, PREVIEWS, REDACTOR, RUNTIME, SECURITY, STORE, WEB_DIR, WORKER
from server.file_routes import file_routes
from server.jobs import job_routes
from server.pools import Pools
from server.previews import PreviewCache
from server.queue_lock import hold_queue_lock
from server.redaction import PathRedactor
from server.routes import routes
from server.security import RedactingAccessLogger, SecurityConfig, install_security
from server.startup import NodeLoading, nodes_gate
from server.store import PromptStore
from server.worker import EventBridge, PromptWorker
from server.workflow_routes import workflow_routes
from server.ws import SocketHub, server_features

log = logging.getLogger(__name__)
DEFAULT_WEB_DIR = Path(__file__).resolve().parent.parent / "web"
DB_NAME = "flowmill-queue.sqlite3"
WATCHDOG_SECONDS = 5.0


async def websocket(request: web.Request) -> web.StreamResponse:
    return await request.app[HUB].handle(request)


def _add_routes(app: web.Application) -> None:
    """Every route bare and under /api, as ComfyUI mounts them; static web files last."""
    definitions = [*routes, *job_routes, *file_routes, *workflow_routes, web.get("/ws", websocket)]
    for prefix in ("", "/api"):
        for definition in definitions:
            if isinstance(definition, web.RouteDef):
                app.router.add_route(definition.method, prefix + definition.path, definition.handler)
    if app[WEB_DIR].is_dir():
        app.router.add_static("/", app[WEB_DIR], follow_symlinks=False)


def create_app(runtime: Runtime, security: SecurityConfig, *, db_path: Path | None = None,
               web_dir: Path = DEFAULT_WEB_DIR, nodes: NodeLoading | None = None) -> web.Application:
    """The app; `nodes` is the registry still loading in the background (default: already complete)."""
    app = web.Application(client_max_size=security.client_max_size)
    install_security(app, security)
    nodes = nodes or NodeLoading()
    app.middlewares.append(nodes_gate(nodes))
    store = PromptStore(db_path or runtime.folders.user_dir / DB_NAME)
    bridge = EventBridge()
    redactor = PathRedactor.for_folders(runtime.folders)
    worker = PromptWorker(runtime.executor, store, bridge, redact=redactor.redact_value)
    pools = Pools.create()
    hub = SocketHub(server_features(security.max_upload_size), worker.catch_up, store.queue_remaining, pools.control)
    bridge.connect(hub.deliver)
    app[RUNTIME], app[SECURITY], app[WEB_DIR] = runtime, security, web_dir
    app[STORE], app[WORKER], app[HUB] = store, worker, hub
    app[POOLS], app[PREVIEWS], app[REDACTOR], app[NODES] = pools, PreviewCache(), redactor, nodes
    _add_routes(app)
    app.cleanup_ctx.append(_lifecycle)
    return app


def _recover(store: PromptStore, folders: Folders) -> None:
    """Start-up disk work (folder scans, an integrity check): run in a thread, not on the loop."""
    for folder in (folders.input_dir, folders.output_dir, folders.temp_dir):
        remove_stale_temp_files(folder)
    recovered = store.recover_after_restart()
    if recovered:
        log.warning("marked %d prompt(s) interrupted: they were running when the server stopped", len(recovered))


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    store, worker = app[STORE], app[WORKER]
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(app[POOLS].control, _recover, store, app[RUNTIME].folders)
    worker.bridge.attach(loop)
    # The worker claims recovered prompts at once, so it starts only when every node is registered.
    watchdog = asyncio.ensure_future(_start_worker_when_ready(app[NODES], worker))
    try:
        yield
    finally:
        watchdog.cancel()
        await app[HUB].close_all()
        await loop.run_in_executor(None, worker.stop)
        await loop.run_in_executor(None, store.close)
        app[POOLS].shutdown()


async def _start_worker_when_ready(nodes: NodeLoading, worker: PromptWorker) -> None:
    try:
        await nodes.wait()
    except Exception:
        return  # logged by NodeLoading; requests are answered 503 naming the failure
    worker.start()
    await _watch_worker(worker)


async def _watch_worker(worker: PromptWorker) -> None:
    """Restart the worker thread if it ever dies, even when no new prompt arrives to wake it."""
    while True:
        await asyncio.sleep(WATCHDOG_SECONDS)
        worker.ensure_running()


def describe_bind(security: SecurityConfig) -> str:
    hosts = ", ".join(f"http://{host if ':' not in host else f'[{host}]'}:{security.port}" for host in security.listen)
    auth = "token required" if security.token else "no token (loopback only)" if not security.insecure_no_auth \
        else "NO AUTHENTICATION on a non-loopback address"
    return f"Flowmill serving on {hosts}; auth: {auth}"


def serve(runtime: Runtime, security: SecurityConfig, *, load_nodes: Callable[[], None] | None = None) -> None:
    """Run the server until interrupted (blocking).

    Raises QueueInUseError (server/queue_lock.py) when another live server holds this queue.
    `load_nodes` fills `runtime.registry`; it runs on a background thread while the server
    already serves the page, so the first response does not wait for every node module.
    """
    queue_lock = hold_queue_lock(runtime.folders.user_dir / DB_NAME)
    try:
        app = create_app(runtime, security, nodes=NodeLoading(load_nodes))
        print(describe_bind(security), flush=True)
        web.run_app(app, host=list(security.listen), port=security.port, access_log_class=RedactingAccessLogger,
                    print=None)
    finally:
        queue_lock.close()
