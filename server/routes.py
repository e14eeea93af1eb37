"""ComfyUI's prompt, queue, history and info routes (comfyui-compat.md §11), as top-level handlers.

Every route here is also mounted under `/api` by the app factory. Handlers never block the
loop: SQLite calls and system stats run on the control pool (server/pools.py), so they never
wait behind file work; validation and folder listings on the default pool; torch work only on
the worker thread.
"""

from __future__ import annotations

import asyncio
import json
import math
import platform
import sys
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import psutil
from aiohttp import web

from engine.convert import is_ui_workflow, load_workflow
from engine.validation import request_error, validate_prompt
from server.appkeys import HUB, POOLS, REDACTOR, RUNTIME, STORE, WORKER
from server.messages import status_message
from server.pools import run_on
from server.store import SENSITIVE_EXTRA_DATA_KEYS

if TYPE_CHECKING:
    import torch

    from engine.context import ModelScopes
    from engine.runtime import Runtime

routes = web.RouteTableDef()
T = TypeVar("T")
FLOWMILL_VERSION = "0.1.0"


async def off_loop(function: Callable[..., T], *args: Any) -> T:
    """Run blocking work (SQLite commits, validation, listings) in the thread pool."""
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


async def control(request: web.Request, function: Callable[..., T], *args: Any) -> T:
    """Run a short blocking call (the SQLite store, system stats) on the control pool."""
    return await run_on(request.app[POOLS].control, function, *args)


async def read_json(request: web.Request) -> Any:
    """Parse the body as JSON whatever its Content-Type, as ComfyUI does for script clients."""
    try:
        return json.loads(await request.read() or b"{}")
    except (ValueError, RecursionError) as error:  # deeply nested JSON overflows the parser's stack
        raise web.HTTPBadRequest(text=json.dumps({"error": request_error("invalid_prompt", "Body is not valid "
                                 "JSON", str(error)), "node_errors": {}}), content_type="application/json") from None


async def broadcast_status(app: web.Application) -> None:
    """Tell every client the queue length; the count is read off the loop, since the store's lock
    can be held through a worker's `synchronous=FULL` commit."""
    remaining = await run_on(app[POOLS].control, app[STORE].queue_remaining)
    app[HUB].deliver([(status_message(remaining), None)])


@routes.get("/prompt")
async def get_prompt(request: web.Request) -> web.Response:
    remaining = await control(request, request.app[STORE].queue_remaining)
    return web.json_response({"exec_info": {"queue_remaining": remaining}})


@routes.post("/prompt")
async def post_prompt(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict) or "prompt" not in body:
        error = request_error("no_prompt", "No prompt provided", "No prompt provided")
        return web.json_response({"error": error, "node_errors": {}}, status=400)
    runtime = request.app[RUNTIME]
    prompt = body["prompt"]
    if isinstance(prompt, dict) and is_ui_workflow(prompt):  # beyond ComfyUI: canvas files run directly
        try:
            prompt = await off_loop(_convert_canvas, runtime, prompt)
        except ValueError as error:
            reason = request.app[REDACTOR].redact(str(error))
            return web.json_response({"error": request_error("invalid_prompt", f"Cannot convert the UI workflow: "
                                      f"{reason}", reason), "node_errors": {}}, status=400)
    targets = body.get("partial_execution_targets")
    checked = await off_loop(lambda: validate_prompt(prompt, runtime.registry, folders=runtime.folders,
                                                     partial_targets=targets,
                                                     max_tensor_bytes=runtime.max_tensor_bytes))
    if not checked.ok:
        redact = request.app[REDACTOR].redact_value
        return web.json_response({"error": redact(checked.error), "node_errors": redact(checked.node_errors)},
                                 status=400)
    prompt_id = str(body.get("prompt_id") or uuid.uuid4())
    if not isinstance(body.get("extra_data") or {}, dict):
        return web.json_response({"error": request_error("invalid_prompt", "extra_data must be an object",
                                  f"got {type(body['extra_data']).__name__}"), "node_errors": {}}, status=400)
    extra_data = _extra_data(body)
    store = request.app[STORE]
    try:
        number = _queue_number(body.get("number"))
        front = _front_flag(body.get("front"))
        if number is None:
            number = await control(request, store.next_number, front)
        await control(request, store.enqueue, prompt_id, float(number), checked.prompt, extra_data, checked.outputs)
    except (ValueError, TypeError) as error:
        return web.json_response({"error": request_error("invalid_prompt", "Cannot queue the prompt", str(error)),
                                  "node_errors": {}}, status=400)
    # The status goes out before the worker is woken, so clients see it before `execution_start`
    # (comfyui-compat.md §10.3): the count is read in a thread, and a woken worker could win.
    await broadcast_status(request.app)
    request.app[WORKER].wake()
    number = int(number) if float(number).is_integer() else float(number)  # ComfyUI sends whole numbers as ints
    return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": checked.node_errors})


# Queue numbers are stored as floats: beyond 2**53 they stop being exact, and far beyond they
# overflow (a 401-digit "number" used to answer 500).
MAX_QUEUE_NUMBER = 2**53


def _queue_number(value: Any) -> float | int | None:
    """The client's `number` (None: the server picks one), or ValueError naming what is wrong."""
    if value is None:
        return None
    if isinstance(value, str):  # ComfyUI takes float(number), so numeric strings work there too
        shown = f"{value[:20]!r}..." if len(value) > 20 else repr(value)
        try:
            parsed = float(value)
        except ValueError:
            raise ValueError(f"number must be a number, got the string {shown}") from None
        if not math.isfinite(parsed) or abs(parsed) > MAX_QUEUE_NUMBER:
            raise ValueError(f"number must be between -2**53 and 2**53, got {shown} ({len(value)} characters)")
        return parsed
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"number must be a JSON number, got {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"number must be finite, got {value}")
    if abs(value) > MAX_QUEUE_NUMBER:
        shown = f"a {len(str(abs(value)))}-digit number" if isinstance(value, int) else f"{value:g}"
        raise ValueError(f"number must be between -2**53 and 2**53, got {shown}")
    return value


def _front_flag(value: Any) -> bool:
    """ComfyUI's `front`: true queues the prompt before all others. A boolean, 0/1 or null."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    shown = f"a {len(str(abs(value)))}-digit number" if isinstance(value, int) else type(value).__name__
    raise ValueError(f"front must be true or false, got {shown}")


def _convert_canvas(runtime: Runtime, canvas: dict[str, Any]) -> dict[str, Any]:
    """UI workflow -> API prompt. Blocking as a whole: object_info lists the model and input folders."""
    return load_workflow(canvas, runtime.registry.object_info(runtime.folders.choices))


def _extra_data(body: dict[str, Any]) -> dict[str, Any]:
    """ComfyUI's extra_data: client_id copied in, create_time added, secrets split out."""
    extra = dict(body.get("extra_data") or {})
    for key in SENSITIVE_EXTRA_DATA_KEYS:
        extra.pop(key, None)
    if body.get("client_id") is not None:
        extra["client_id"] = str(body["client_id"])
    extra["create_time"] = int(time.time() * 1000)
    return extra


@routes.get("/queue")
async def get_queue(request: web.Request) -> web.Response:
    running, pending = await control(request, request.app[STORE].queue)
    return web.json_response({"queue_running": [item.as_comfy_tuple() for item in running],
                              "queue_pending": [item.as_comfy_tuple() for item in pending]})


async def clear_or_delete(request: web.Request, clear: Callable[[], Any],
                          delete: Callable[[list[str]], Any]) -> None:
    """ComfyUI's `{"clear": true}` / `{"delete": [ids]}` bodies of POST /queue and POST /history."""
    body = await read_json(request)
    if isinstance(body, dict) and body.get("clear"):
        await control(request, clear)
    if isinstance(body, dict) and isinstance(body.get("delete"), list):
        await control(request, delete, [str(item) for item in body["delete"]])


@routes.post("/queue")
async def post_queue(request: web.Request) -> web.Response:
    store = request.app[STORE]
    await clear_or_delete(request, store.clear_pending, store.delete_pending)
    await broadcast_status(request.app)
    return web.Response(status=200)


@routes.post("/interrupt")
async def post_interrupt(request: web.Request) -> web.Response:
    body = await read_json(request)
    prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
    request.app[WORKER].interrupt(str(prompt_id) if prompt_id else None)
    return web.Response(status=200)


@routes.post("/free")
async def post_free(request: web.Request) -> web.Response:
    body = await read_json(request)
    body = body if isinstance(body, dict) else {}
    request.app[WORKER].request_free(bool(body.get("unload_models")), bool(body.get("free_memory")))
    return web.Response(status=200)


@routes.get("/history")
async def get_history(request: web.Request) -> web.Response:
    try:
        max_items = int(request.query["max_items"]) if "max_items" in request.query else None
        offset = int(request.query["offset"]) if "offset" in request.query else None
    except ValueError:
        raise web.HTTPBadRequest(text="max_items and offset must be integers") from None
    return web.json_response(await control(request, request.app[STORE].history, max_items, offset))


@routes.get("/history/{prompt_id}")
async def get_history_item(request: web.Request) -> web.Response:
    return web.json_response(await control(request, request.app[STORE].history_item, request.match_info["prompt_id"]))


@routes.post("/history")
async def post_history(request: web.Request) -> web.Response:
    store = request.app[STORE]
    await clear_or_delete(request, store.clear_history, store.delete_history)
    return web.Response(status=200)


@routes.get("/object_info")
async def get_object_info(request: web.Request) -> web.Response:
    runtime = request.app[RUNTIME]
    return web.json_response(await off_loop(runtime.registry.object_info, runtime.folders.choices))


@routes.get("/object_info/{node_class}")
async def get_object_info_node(request: web.Request) -> web.Response:
    from engine.registry import node_info

    runtime = request.app[RUNTIME]
    spec = runtime.registry.get(request.match_info["node_class"])
    if spec is None:
        return web.json_response({})
    return web.json_response({spec.id: await off_loop(node_info, spec, runtime.folders.choices)})


@routes.get("/system_stats")
async def get_system_stats(request: web.Request) -> web.Response:
    # CUDA queries can wait behind the worker's kernels; /proc reads are file reads.
    runtime = request.app[RUNTIME]
    return web.json_response(await control(request, _system_stats, runtime.device, runtime.executor.models))


def _system_stats(device: torch.device, models: ModelScopes) -> dict[str, Any]:
    import torch

    memory = psutil.virtual_memory()
    stats = {"name": str(device), "type": device.type, "index": device.index or 0,
             "vram_total": memory.total, "vram_free": memory.available,
             "torch_vram_total": 0, "torch_vram_free": 0}
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        stats.update(name=torch.cuda.get_device_name(device), vram_total=total, vram_free=free,
                     torch_vram_total=torch.cuda.memory_reserved(device),
                     torch_vram_free=torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    system = {"os": sys.platform, "ram_total": memory.total, "ram_free": memory.available,
              "comfyui_version": FLOWMILL_VERSION, "flowmill_version": FLOWMILL_VERSION,
              "required_frontend_version": None, "python_version": platform.python_version(),
              "pytorch_version": torch.__version__, "embedded_python": False,
              "argv": []}  # never echo the command line: it may carry the token
    # Flowmill's addition: the model manager's budgets and what it holds (ComfyUI clients ignore it).
    return {"system": system, "devices": [stats], "models": models.stats()}


@routes.get("/flowmill/default_workflow")
async def get_default_workflow(request: web.Request) -> web.Response:
    """The canvas workflow the browser opens with (`serve --workflow`, default workflows/default.json)."""
    path = request.app[RUNTIME].settings.default_workflow
    try:
        text = await off_loop(path.read_text, "utf-8")
    except OSError:
        raise web.HTTPNotFound(text=f"default workflow {path.name} is missing") from None
    return web.Response(text=text, content_type="application/json")


@routes.get("/features")
async def get_features(request: web.Request) -> web.Response:
    """The same map the websocket sends in reply to a client's `feature_flags`."""
    return web.json_response(request.app[HUB].features)
