"""Routes that read or write files: `/view`, uploads, model listings, extensions, the index page.

Every path from a request goes through `engine.paths.resolve_under` (real paths on both
sides), and files are served through `server.serving.file_response`, which turns HTML,
SVG, XML and script types into downloads. Uploads must decode as an allowed image format
within the pixel budget before anything is written, and are written atomically. A path that
leaves its root is 403, a malformed one 400, an image Pillow cannot identify 415. Path checks,
stats and writes run on the app's file pool, Pillow on its small image pool (server/pools.py),
folder walks on the default pool, never on the event loop; converted previews are cached
(server/previews.py). Error text sent to clients names paths relative to their roots, never the
server's absolute paths.
"""

from __future__ import annotations

import io
import json
import posixpath
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import BodyPartReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from PIL import Image

from engine.media import ImageDecodeError, atomic_write_bytes, encode_png, open_image_safely
from engine.paths import MODEL_FOLDERS, Folders, PathEscapeError, UnsafePathError, resolve_under
from server.appkeys import POOLS, PREVIEWS, REDACTOR, RUNTIME, SECURITY, WEB_DIR
from server.pools import run_on
from server.routes import off_loop
from server.serving import content_disposition, file_response

file_routes = web.RouteTableDef()
T = TypeVar("T")
PREVIEW_FORMATS = {"webp": "WEBP", "jpeg": "JPEG", "jpg": "JPEG", "png": "PNG"}
DEFAULT_PREVIEW_QUALITY = 90
CONVERTIBLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
# Text fields of an upload (type, subfolder, overwrite, original_ref) are short.
MAX_UPLOAD_FIELD_BYTES = 64 * 1024


_HTTP_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest, 403: web.HTTPForbidden, 404: web.HTTPNotFound, 415: web.HTTPUnsupportedMediaType}


def _bad_request(message: str, status: int = 400) -> web.HTTPException:
    """A JSON error response to raise; `status` is 413 or one of _HTTP_ERRORS."""
    body = json.dumps({"error": message})
    if status == 413:
        return web.HTTPRequestEntityTooLarge(0, text=body, content_type="application/json")
    return _HTTP_ERRORS[status](text=body, content_type="application/json")


def _path_error(error: UnsafePathError) -> web.HTTPException:
    """403 for a well-formed path that leaves its root, 400 for a malformed one."""
    return _bad_request(str(error), 403 if isinstance(error, PathEscapeError) else 400)


def _decode_error(error: ImageDecodeError) -> web.HTTPException:
    """415 when Pillow could not even tell the format (or it is not allowed), else 400 (corrupt data)."""
    unsupported = isinstance(error.__cause__, Image.UnidentifiedImageError)
    return _bad_request(str(error), 415 if unsupported else 400)


def _contained(root: Path, relative: str) -> Path:
    try:
        return resolve_under(root, relative)
    except UnsafePathError as error:
        raise _path_error(error) from None


def _resolve(folders: Folders, folder_type: str, subfolder: str, filename: str) -> Path:
    """The real path of `subfolder/filename` in the folder of `folder_type`; blocking (stats every part)."""
    try:
        root = folders.root_for_type(folder_type)
    except UnsafePathError as error:
        raise _path_error(error) from None
    # No stripping: an absolute subfolder must be refused by resolve_under, not rewritten.
    return _contained(root, posixpath.join(subfolder, filename) if subfolder else filename)


def _existing_file(folders: Folders, folder_type: str, subfolder: str, filename: str) -> Path:
    path = _resolve(folders, folder_type, subfolder, filename)
    if not path.is_file():
        raise _bad_request(f"no such file: {filename}", 404)
    return path


async def on_files(request: web.Request, function: Callable[..., T], *args: Any) -> T:
    """Run quick file work (path checks, stats, writes) on the file pool; errors without server paths."""
    return await _run_redacted(request, request.app[POOLS].files, function, *args)


async def on_images(request: web.Request, function: Callable[..., T], *args: Any) -> T:
    """Run Pillow work on the small, low-priority image pool; errors without server paths."""
    return await _run_redacted(request, request.app[POOLS].images, function, *args)


async def _run_redacted(request: web.Request, pool: ThreadPoolExecutor, function: Callable[..., T], *args: Any) -> T:
    try:
        return await run_on(pool, function, *args)
    except web.HTTPException as error:
        if error.text:
            error.text = request.app[REDACTOR].redact(error.text)
        raise


@file_routes.get("/view")
async def view(request: web.Request) -> web.StreamResponse:
    filename = request.query.get("filename", "")
    if not filename:
        raise _bad_request("filename is required")
    path = await on_files(request, _existing_file, request.app[RUNTIME].folders, request.query.get("type", "output"),
                          request.query.get("subfolder", ""), filename)
    preview, channel = request.query.get("preview"), request.query.get("channel")
    if (preview or channel) and path.suffix.lower() in CONVERTIBLE_SUFFIXES:
        key = (await on_files(request, _file_identity, path), preview, channel)
        body, fmt = await request.app[PREVIEWS].get(
            key, lambda: on_images(request, _converted_image, path, preview, channel))
        extension = fmt.lower()
        return web.Response(body=body, content_type=f"image/{extension}", headers={
            hdrs.CONTENT_DISPOSITION: content_disposition("inline", f"{path.stem}.{extension}")})
    return file_response(path, path.name)


def _file_identity(path: Path) -> tuple[str, int, int]:
    """What makes a cached preview stale: the real path, its size and its modification time."""
    status = path.stat()
    return str(path), status.st_size, status.st_mtime_ns


def _preview_settings(preview: str | None) -> tuple[str, int]:
    """`webp;90` -> ("WEBP", 90); unknown formats become WebP, odd qualities the default or 1..100."""
    if not preview:
        return "PNG", DEFAULT_PREVIEW_QUALITY
    name, _, number = preview.partition(";")
    try:
        quality = min(max(int(number), 1), 100)  # libwebp refuses anything outside 0..100
    except ValueError:
        quality = DEFAULT_PREVIEW_QUALITY
    return PREVIEW_FORMATS.get(name.strip().lower(), "WEBP"), quality


def _converted_image(path: Path, preview: str | None, channel: str | None) -> tuple[bytes, str]:
    """Re-encode an image for `/view?preview=webp;90` or `channel=rgb|a|rgba`; returns (bytes, format)."""
    fmt, quality = _preview_settings(preview)
    try:
        with open_image_safely(path, name=path.name) as image:
            if channel == "rgb":
                image = image.convert("RGB")
            elif channel == "a":
                image = image.convert("RGBA").getchannel("A")
            elif image.mode not in ("RGB", "RGBA", "L"):
                image = image.convert("RGBA")
            if fmt == "JPEG" and image.mode == "RGBA":
                image = image.convert("RGB")
            buffer = io.BytesIO()
            image.save(buffer, format=fmt, quality=quality)
    except ImageDecodeError as error:
        raise _decode_error(error) from None
    return buffer.getvalue(), fmt


async def _read_upload(request: web.Request) -> tuple[str, bytes, dict[str, str]]:
    """(client file name, bytes, text fields) of a multipart upload; the image is checked off the loop.

    Every malformed body (no boundary, truncated, a part without a name, a nested multipart
    part, undecodable field text) is a 400 naming the problem, never a 500.
    """
    if request.content_type != "multipart/form-data":
        raise _bad_request(f"an upload must be multipart/form-data, got {request.content_type!r}")
    try:
        filename, data, fields = await _parse_multipart(request, request.app[SECURITY].max_upload_size)
    except HttpProcessingError as error:  # a part's header lines (NUL, CR or LF inside, no colon)
        raise _bad_request(f"malformed multipart body: {error.message}") from None
    except (ValueError, LookupError) as error:  # aiohttp's parse errors; LookupError: an unknown charset
        raise _bad_request(f"malformed multipart body: {error}") from None
    await on_images(request, _check_image, data, filename)
    return filename, data, fields


async def _parse_multipart(request: web.Request, limit: int) -> tuple[str, bytes, dict[str, str]]:
    """The upload's parts, read within `limit` bytes in all (a chunked body declares no length)."""
    reader = await request.multipart()
    image: tuple[str, bytes] | None = None
    fields: dict[str, str] = {}
    remaining = limit
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise _bad_request("malformed multipart body: nested multipart parts are not accepted")
        if not part.name:
            raise _bad_request("malformed multipart body: a part has no name (Content-Disposition: form-data; "
                               "name=\"...\")")
        if part.name == "image":
            if not part.filename:
                raise _bad_request("multipart field 'image' has no filename")
            image = (part.filename, await _read_part(part, remaining, limit))
            remaining -= len(image[1])
        else:
            raw = await _read_part(part, min(MAX_UPLOAD_FIELD_BYTES, remaining), limit)
            remaining -= len(raw)
            fields[part.name] = raw.decode(part.get_charset(default="utf-8"))
    if image is None:
        raise _bad_request("multipart field 'image' with a file name is required")
    return image[0], image[1], fields


async def _read_part(part: BodyPartReader, limit: int, upload_limit: int) -> bytes:
    """A part's raw bytes (no transfer decoding: browsers send none), refused past `limit` bytes."""
    chunks, size = [], 0
    while chunk := await part.read_chunk():
        size += len(chunk)
        if size > limit:
            if limit < MAX_UPLOAD_FIELD_BYTES or part.name == "image":
                raise _bad_request(f"the upload is larger than {upload_limit:,} bytes in all", 413)
            raise _bad_request(f"multipart field {part.name!r} is larger than {limit:,} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def _check_image(data: bytes, name: str) -> None:
    try:
        with open_image_safely(data, name=name):
            pass  # decoding the first frame is the check
    except ImageDecodeError as error:
        raise _decode_error(error) from None


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
    filename, data, fields = await _read_upload(request)
    return web.json_response(await on_files(request, _store_upload, request.app[RUNTIME].folders, fields, filename,
                                            data))


def _store_upload(folders: Folders, fields: dict[str, str], filename: str, data: bytes) -> dict[str, str]:
    """Write an upload; `name` is relative to root/subfolder, as ComfyUI answers ("a/b (1).png")."""
    folder_type, subfolder = fields.get("type") or "input", fields.get("subfolder", "")
    base = _resolve(folders, folder_type, subfolder, "")
    # The name must stay inside the subfolder, not only the root, so the answer is a name
    # that LoadImage finds again under this subfolder.
    path = _contained(base, filename)
    if path == base:
        raise _bad_request(f"{filename!r} names the folder itself, not a file")
    path, duplicate = _free_name(path, data, fields.get("overwrite") in ("true", "1"))
    if not duplicate:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, data)
        except (FileExistsError, NotADirectoryError, IsADirectoryError) as error:
            # A name that collides with an existing file or folder; say so without the server path.
            raise _bad_request(f"cannot store {filename!r} in {subfolder!r}: {error.strerror}") from None
    return {"name": path.relative_to(base).as_posix(), "subfolder": subfolder, "type": folder_type}


@file_routes.post("/upload/mask")
async def upload_mask(request: web.Request) -> web.Response:
    """Put the uploaded image's alpha channel into the referenced original, saved as PNG."""
    filename, data, fields = await _read_upload(request)
    folders = request.app[RUNTIME].folders
    try:
        reference = json.loads(fields.get("original_ref", ""))
        where = (str(reference.get("type", "input")), str(reference.get("subfolder", "")), str(reference["filename"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise _bad_request("original_ref must be JSON with filename, subfolder and type") from None
    try:
        original = await on_files(request, _existing_file, folders, *where)
    except web.HTTPNotFound:
        raise _bad_request(f"original image not found: {where[2]}", 404) from None
    merged = await on_images(request, _merge_alpha, original, data)
    return web.json_response(await on_files(request, _store_upload, folders, {**fields, "overwrite": "true"}, filename,
                                            merged))


def _merge_alpha(original: Path, mask_data: bytes) -> bytes:
    try:
        with open_image_safely(original, name=original.name) as base, open_image_safely(mask_data) as mask:
            combined = base.convert("RGBA")
            alpha = mask.convert("RGBA").getchannel("A").resize(combined.size, Image.Resampling.LANCZOS)
            combined.putalpha(alpha)
            return encode_png(combined)
    except ImageDecodeError as error:
        raise _decode_error(error) from None


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
    packs = sorted(request.app[RUNTIME].registry.web_directories.items())
    roots = [("core", request.app[WEB_DIR] / "extensions"), *((pack, Path(directory)) for pack, directory in packs)]
    return web.json_response(await off_loop(_extension_scripts, roots))


def _extension_scripts(roots: list[tuple[str, Path]]) -> list[str]:
    """`/extensions/<pack>/<path>` for every script under each root (a folder walk: blocking)."""
    return [f"/extensions/{pack}/{name}" for pack, directory in roots for name in _scripts(directory)]


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
    path = await off_loop(_existing_extension_file, Path(root), request.match_info["path"])
    return file_response(path, path.name) if path.suffix != ".js" else web.FileResponse(
        path, headers={"Content-Type": "text/javascript"})


def _existing_extension_file(root: Path, relative: str) -> Path:
    path = _contained(root, relative)
    if not path.is_file():
        raise _bad_request("not found", 404)
    return path


@file_routes.get("/")
async def index(request: web.Request) -> web.StreamResponse:
    page = request.app[WEB_DIR] / "index.html"
    if not await off_loop(page.is_file):
        raise _bad_request("the web app is not installed (web/index.html is missing)", 404)
    return web.FileResponse(page, headers={"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache"})
