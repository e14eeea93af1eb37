"""Routes that read or write files: `/view`, uploads, model listings, extensions, the index page.

Every path from a request goes through `engine.paths.resolve_under` (real paths on both
sides), and files are served through `server.serving.file_response`, which turns HTML,
SVG, XML and script types into downloads. Uploads must decode as an allowed image format
within the pixel budget before anything is written, and are written atomically.
"""

from __future__ import annotations

import io
import json
import posixpath
from pathlib import Path
from typing import Any

from aiohttp import web
from PIL import Image

from engine.media import ImageDecodeError, atomic_write_bytes, encode_png, open_image_safely
from engine.paths import MODEL_FOLDERS, UnsafePathError, resolve_under
from server.appkeys import RUNTIME, WEB_DIR
from server.routes import off_loop
from server.serving import file_response

file_routes = web.RouteTableDef()
PREVIEW_FORMATS = {"webp": "WEBP", "jpeg": "JPEG", "jpg": "JPEG", "png": "PNG"}


_HTTP_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest, 403: web.HTTPForbidden, 404: web.HTTPNotFound, 415: web.HTTPUnsupportedMediaType}


def _bad_request(message: str, status: int = 400) -> web.HTTPException:
    """A JSON error response to raise; `status` is one of _HTTP_ERRORS."""
    return _HTTP_ERRORS[status](text=json.dumps({"error": message}), content_type="application/json")


def _resolve(request: web.Request, folder_type: str, subfolder: str, filename: str) -> Path:
    folders = request.app[RUNTIME].folders
    try:
        root = folders.root_for_type(folder_type)
        # No stripping: an absolute subfolder must be refused by resolve_under, not rewritten.
        relative = posixpath.join(subfolder, filename) if subfolder else filename
        return resolve_under(root, relative)
    except UnsafePathError as error:
        raise _bad_request(str(error), 403 if "leaves" in str(error) else 400) from None


@file_routes.get("/view")
async def view(request: web.Request) -> web.StreamResponse:
    filename = request.query.get("filename", "")
    if not filename:
        raise _bad_request("filename is required")
    path = _resolve(request, request.query.get("type", "output"), request.query.get("subfolder", ""), filename)
    if not path.is_file():
        raise _bad_request(f"no such file: {filename}", 404)
    preview, channel = request.query.get("preview"), request.query.get("channel")
    if (preview or channel) and path.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"):
        body, content_type = await off_loop(_converted_image, path, preview, channel)
        return web.Response(body=body, content_type=content_type,
                            headers={"Content-Disposition": f'inline; filename="{path.stem}"'})
    return file_response(path, path.name)


def _converted_image(path: Path, preview: str | None, channel: str | None) -> tuple[bytes, str]:
    """Re-encode an image for `/view?preview=webp;90` or `channel=rgb|a|rgba`."""
    with open_image_safely(path) as image:
        image.load()
        if channel == "rgb":
            image = image.convert("RGB")
        elif channel == "a":
            image = image.convert("RGBA").getchannel("A")
        elif image.mode not in ("RGB", "RGBA", "L"):
            image = image.convert("RGBA")
        fmt, quality = "PNG", 90
        if preview:
            name, _, number = preview.partition(";")
            fmt = PREVIEW_FORMATS.get(name.lower(), "WEBP")
            quality = int(number) if number.isdigit() else 90
        if fmt == "JPEG" and image.mode == "RGBA":
            image = image.convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, quality=quality)
    return buffer.getvalue(), f"image/{fmt.lower()}"


async def _read_upload(request: web.Request) -> tuple[Any, dict[str, str]]:
    post = await request.post()
    upload = post.get("image")
    if upload is None or not hasattr(upload, "file") or not upload.filename:
        raise _bad_request("multipart field 'image' with a file name is required")
    fields = {key: str(value) for key, value in post.items() if isinstance(value, str)}
    return upload, fields


def _check_image(data: bytes, name: str) -> None:
    try:
        with open_image_safely(data, name=name) as image:
            image.load()
    except ImageDecodeError as error:
        unsupported = "format" in str(error).lower() or "cannot identify" in str(error).lower()
        raise _bad_request(str(error), 415 if unsupported else 400) from None


def _free_name(path: Path, data: bytes, overwrite: bool) -> tuple[Path, bool]:
    """ComfyUI's naming: keep the name, or add " (n)"; an identical existing file is reused."""
    if overwrite and path.is_dir():
        raise _bad_request(f"{path.name!r} is a folder, not a file")
    candidate, counter = path, 1
    while not overwrite and candidate.exists():
        if candidate.is_file() and candidate.read_bytes() == data:
            return candidate, True
        candidate = path.with_name(f"{path.stem} ({counter}){path.suffix}")
        counter += 1
    return candidate, False


@file_routes.post("/upload/image")
async def upload_image(request: web.Request) -> web.Response:
    upload, fields = await _read_upload(request)
    data = upload.file.read()
    await off_loop(_check_image, data, upload.filename)
    return web.json_response(await off_loop(_store_upload, request, fields, upload.filename, data))


def _store_upload(request: web.Request, fields: dict[str, str], filename: str, data: bytes) -> dict[str, str]:
    folder_type, subfolder = fields.get("type") or "input", fields.get("subfolder", "")
    path = _resolve(request, folder_type, subfolder, filename)
    path, duplicate = _free_name(path, data, fields.get("overwrite") in ("true", "1"))
    if not duplicate:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data)
        except (FileExistsError, NotADirectoryError, IsADirectoryError) as error:
            # A name that collides with an existing file or folder; say so without the server path.
            raise _bad_request(f"cannot store {filename!r} in {subfolder!r}: {error.strerror}") from None
    return {"name": path.name, "subfolder": subfolder, "type": folder_type}


@file_routes.post("/upload/mask")
async def upload_mask(request: web.Request) -> web.Response:
    """Put the uploaded image's alpha channel into the referenced original, saved as PNG."""
    upload, fields = await _read_upload(request)
    data = upload.file.read()
    await off_loop(_check_image, data, upload.filename)
    try:
        reference = json.loads(fields.get("original_ref", ""))
        original = _resolve(request, reference.get("type", "input"), reference.get("subfolder", ""),
                            reference["filename"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise _bad_request("original_ref must be JSON with filename, subfolder and type") from None
    if not original.is_file():
        raise _bad_request(f"original image not found: {reference['filename']}", 404)
    merged = await off_loop(_merge_alpha, original, data)
    return web.json_response(await off_loop(_store_upload, request, {**fields, "overwrite": "true"},
                                            upload.filename, merged))


def _merge_alpha(original: Path, mask_data: bytes) -> bytes:
    with open_image_safely(original) as base, open_image_safely(mask_data) as mask:
        combined = base.convert("RGBA")
        alpha = mask.convert("RGBA").getchannel("A").resize(combined.size, Image.Resampling.LANCZOS)
        combined.putalpha(alpha)
        return encode_png(combined)


@file_routes.get("/models")
async def list_model_folders(request: web.Request) -> web.Response:
    return web.json_response(list(MODEL_FOLDERS))


@file_routes.get("/models/{folder}")
async def list_models(request: web.Request) -> web.Response:
    folders = request.app[RUNTIME].folders
    try:
        return web.json_response(await off_loop(folders.list_models, request.match_info["folder"]))
    except UnsafePathError as error:
        raise _bad_request(str(error), 404) from None


@file_routes.get("/embeddings")
async def list_embeddings(request: web.Request) -> web.Response:
    names = await off_loop(request.app[RUNTIME].folders.list_models, "embeddings")
    return web.json_response([Path(name).with_suffix("").as_posix() for name in names])


@file_routes.get("/extensions")
async def list_extensions(request: web.Request) -> web.Response:
    """Frontend extension scripts: web/extensions/** and each custom pack's WEB_DIRECTORY."""
    scripts = [f"/extensions/core/{name}" for name in _scripts(request.app[WEB_DIR] / "extensions")]
    for pack, directory in sorted(request.app[RUNTIME].registry.web_directories.items()):
        scripts.extend(f"/extensions/{pack}/{name}" for name in _scripts(Path(directory)))
    return web.json_response(scripts)


def _scripts(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(path.relative_to(directory).as_posix() for path in directory.rglob("*.js") if path.is_file())


@file_routes.get("/extensions/{pack}/{path:.+}")
async def extension_file(request: web.Request) -> web.StreamResponse:
    pack = request.match_info["pack"]
    directories = request.app[RUNTIME].registry.web_directories
    root = request.app[WEB_DIR] / "extensions" if pack == "core" else directories.get(pack)
    if root is None:
        raise _bad_request(f"no extension pack {pack!r}", 404)
    try:
        path = resolve_under(Path(root), request.match_info["path"])
    except UnsafePathError as error:
        raise _bad_request(str(error), 403) from None
    if not path.is_file():
        raise _bad_request("not found", 404)
    return file_response(path, path.name) if path.suffix != ".js" else web.FileResponse(
        path, headers={"Content-Type": "text/javascript"})


@file_routes.get("/")
async def index(request: web.Request) -> web.StreamResponse:
    page = request.app[WEB_DIR] / "index.html"
    if not page.is_file():
        raise _bad_request("the web app is not installed (web/index.html is missing)", 404)
    return web.FileResponse(page, headers={"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache"})
