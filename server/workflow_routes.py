"""The canvas's sharing routes: the templates in workflows/ and UI -> API conversion for export.

`GET /flowmill/templates` lists every `*.json` workflow in `Settings.workflows_dir` (canvas
files as `format: "canvas"`, API prompts marked `format: "api"`; anything else is skipped), with
the title and one-line description the menu shows. Those come from the folder's index,
`index/templates.json` (`{"templates": [{"name", "title", "description"}, ...]}`, in menu order),
because API-format files have no place of their own for them; a file the index does not name
follows, sorted, titled by its own `extra.title` / `extra.description` or by its file name.
`GET /flowmill/templates/{name}` returns one of them, and `POST /flowmill/convert` turns a
canvas workflow into the API prompt `/prompt` would run (the same `engine.convert` code), so
"Export API" downloads exactly what the server executes. `GET /flowmill/core_node_types` lists
the node types that ship with ComfyUI (`{"types": [sorted names]}`), so the canvas can tell a
missing core node from a missing custom-node pack. Template names go through
`engine.paths.resolve_under` and must be plain file names: anything else is a 404. File reads
and conversion (object_info lists model folders) run in the thread pool.

Mounted bare and under `/api` by `server.app`; this module must not import the worker or the store.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from engine.comfy_core_nodes import COMFYUI_CORE_NODE_TYPES, describe_missing_type
from engine.convert import is_api_prompt, is_ui_workflow, load_workflow
from engine.paths import UnsafePathError, resolve_under
from engine.validation import request_error
from server.appkeys import RUNTIME
from server.routes import off_loop, read_json

if TYPE_CHECKING:
    from engine.runtime import Runtime

workflow_routes = web.RouteTableDef()
log = logging.getLogger(__name__)
TEMPLATE_SUFFIX = ".json"
# The titles and descriptions of the templates, relative to the workflows folder. In a subfolder,
# so that it is never mistaken for a workflow (every workflows/*.json is one).
TEMPLATE_INDEX = Path("index") / "templates.json"
# Templates are small hand-written files; a huge one is a mistake, not something to parse per listing.
MAX_TEMPLATE_BYTES = 16 * 1024 * 1024


def _title_from_name(stem: str) -> str:
    """"blend_canvas" -> "Blend canvas": a readable default when the file names no title."""
    words = stem.replace("_", " ").replace("-", " ").split()
    text = " ".join(words) or stem
    return text[:1].upper() + text[1:]


def _read_workflow(path: Path) -> Any:
    if path.stat().st_size > MAX_TEMPLATE_BYTES:
        raise ValueError(f"larger than {MAX_TEMPLATE_BYTES} bytes")
    return json.loads(path.read_text("utf-8"))


def _describe(path: Path, data: Any) -> dict[str, Any] | None:
    """A menu entry for one file, or None when it is not a workflow at all."""
    if is_ui_workflow(data):
        kind = "canvas"
        extra = data.get("extra") if isinstance(data.get("extra"), Mapping) else {}
    elif isinstance(data, Mapping) and data and is_api_prompt(data):
        kind, extra = "api", {}
    else:
        return None
    entry: dict[str, Any] = {"name": path.stem, "file": path.name, "format": kind,
                             "title": str(extra.get("title") or _title_from_name(path.stem))}
    if isinstance(extra.get("description"), str):
        entry["description"] = extra["description"]
    return entry


def read_template_index(folder: Path) -> dict[str, dict[str, str]]:
    """{template name: {"title", "description"}} from the folder's index, in its order; {} when
    there is none. A malformed index is logged and ignored: the menu still lists every file."""
    path = folder / TEMPLATE_INDEX
    if not path.is_file():
        return {}
    try:
        resolve_under(folder, TEMPLATE_INDEX.as_posix())
        data = _read_workflow(path)
        listed = data.get("templates") if isinstance(data, Mapping) else None
        if not isinstance(listed, list):
            raise ValueError('expected {"templates": [{"name": ..., "title": ..., "description": ...}, ...]}')
    except (OSError, ValueError, RecursionError) as error:  # UnsafePathError is a ValueError
        log.warning("template index %s ignored: %s", TEMPLATE_INDEX.as_posix(), error)
        return {}
    index: dict[str, dict[str, str]] = {}
    for item in listed:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            log.warning("template index: entry %r skipped (it needs a 'name')", item)
            continue
        index[item["name"]] = {key: str(item[key]).strip() for key in ("title", "description")
                               if isinstance(item.get(key), str) and item[key].strip()}
    return index


def list_templates(folder: Path) -> list[dict[str, Any]]:
    """Every workflow file directly in `folder`: those the index names first, in its order and with
    its titles, then the rest sorted by name. Unreadable files are logged and skipped."""
    if not folder.is_dir():
        return []
    index = read_template_index(folder)
    entries = []
    for path in sorted(folder.glob(f"*{TEMPLATE_SUFFIX}")):
        try:
            # The listing must never reach outside the folder, even through a symlinked file.
            resolve_under(folder, path.name)
            entry = _describe(path, _read_workflow(path)) if path.is_file() else None
        except (OSError, ValueError, RecursionError) as error:
            log.warning("template %s skipped: %s", path.name, error)
            continue
        if entry is not None:
            entry.update(index.get(entry["name"], {}))
            entries.append(entry)
    order = {name: position for position, name in enumerate(index)}
    entries.sort(key=lambda entry: (order.get(entry["name"], len(order)), entry["name"]))
    return entries


def template_path(folder: Path, name: str) -> Path | None:
    """The file for a template name ("img2img" or "img2img.json"), or None when there is none.

    Only a plain file name directly inside `folder` is accepted: separators, "..", hidden
    names and anything `resolve_under` refuses answer "not found", as a missing file does.
    """
    file_name = name if name.endswith(TEMPLATE_SUFFIX) else name + TEMPLATE_SUFFIX
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    try:
        path = resolve_under(folder, file_name)
    except UnsafePathError:
        return None
    if path.parent != Path(resolve_under(folder, ".")) or not path.is_file():
        return None
    return path


def _read_template(folder: Path, name: str) -> str | None:
    path = template_path(folder, name)
    if path is None:
        return None
    text = path.read_text("utf-8")
    json.loads(text)  # a broken file is a server-side problem: report it rather than serve it
    return text


def _not_found(name: str) -> web.HTTPNotFound:
    return web.HTTPNotFound(text=json.dumps({"error": f"no template named {name!r}"}), content_type="application/json")


@workflow_routes.get("/flowmill/templates")
async def get_templates(request: web.Request) -> web.Response:
    folder = request.app[RUNTIME].settings.workflows_dir
    return web.json_response(await off_loop(list_templates, folder))


@workflow_routes.get("/flowmill/templates/{name}")
async def get_template(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    folder = request.app[RUNTIME].settings.workflows_dir
    try:
        text = await off_loop(_read_template, folder, name)
    except (OSError, ValueError) as error:
        log.warning("template %r unreadable: %s", name, error)
        raise _not_found(name) from None
    if text is None:
        raise _not_found(name)
    return web.Response(text=text, content_type="application/json")


def convert_for_export(runtime: Runtime, workflow: Mapping[str, Any]) -> dict[str, dict]:
    """The API prompt for a canvas workflow (or a normalised API prompt), refusing unknown node types.

    An unknown type has no schema to name its widget values by, so its API entry would silently
    lose them; the export is refused instead, naming the nodes.
    """
    object_info = runtime.registry.object_info(runtime.folders.choices)
    prompt = load_workflow(workflow, object_info)
    unknown = [f"node {node_id} ({describe_missing_type(node['class_type'])})" for node_id, node in prompt.items()
               if node["class_type"] not in object_info]
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not a node type this server has, so its inputs cannot be named")
    return prompt


@workflow_routes.get("/flowmill/core_node_types")
async def get_core_node_types(request: web.Request) -> web.Response:
    return web.json_response({"types": sorted(COMFYUI_CORE_NODE_TYPES)})


@workflow_routes.post("/flowmill/convert")
async def post_convert(request: web.Request) -> web.Response:
    body = await read_json(request)
    workflow = body.get("workflow") if isinstance(body, dict) else None
    if not isinstance(workflow, dict):
        error = request_error("invalid_prompt", "No workflow provided", "expected {\"workflow\": {...}}")
        return web.json_response({"error": error, "node_errors": {}}, status=400)
    try:
        prompt = await off_loop(convert_for_export, request.app[RUNTIME], workflow)
    except (ValueError, RecursionError) as error:  # ConversionError is a ValueError and names the node
        error_body = request_error("invalid_prompt", f"Cannot convert the workflow: {error}", str(error))
        return web.json_response({"error": error_body, "node_errors": {}}, status=400)
    return web.json_response(prompt)
