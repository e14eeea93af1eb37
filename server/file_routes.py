"""Routes that read or write files: `/view`, uploads, model listings, extensions, the index page.

Every path from a request goes through `engine.paths.resolve_under` (real paths on both
sides), and files are served through `server.serving.file_response`, which turns HTML,
SVG, XML and script types into downloads. Uploads must decode as an allowed image format
within the pixel budget before anything is written, and are written atomically. A path that
leaves its root is 403, a malformed one 400, an image Pillow cannot identify 415. Path checks,
stats, folder walks and Pillow all run in the thread pool, never on the event loop.
"""

from __future__ import annotations

import io
import json
import posixpath
from pathlib import Path

from aiohttp import hdrs, web
from PIL import Image

from engine.media import ImageDecodeError, atomic_write_bytes, encode_png, open_image_safely
from engine.paths import MODEL_FOLDERS, Folders, PathEscapeError, UnsafePathError, resolve_under
from server.appkeys import RUNTIME, WEB_DIR
from server.routes import off_loop
from server.serving import content_disposition, file_response

file_routes = web.RouteTableDef()
PREVIEW_FORMATS = {"webp": "WEBP", "jpeg": "JPEG", "jpg": "JPEG", "png": "PNG"}
DEFAULT_PREVIEW_QUALITY = 90
CONVERTIBLE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


_HTTP_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest, 403: web.HTTPForbidden, 404: web.HTTPNotFound, 415: web.HTTPUnsupportedMediaType}


def _bad_request(message: str, status: int = 400) -> web.HTTPException:
    """A JSON error response to raise; `status` is one of _HTTP_ERRORS."""
    return _HTTP_ERRORS[status](text=json.dumps({"error": message}), content_type="application/json")


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


@file_routes.get("/view")
async def view(request: web.Request) -> web.StreamResponse:
    filename = request.query.get("filename", "")
    if not filename:
        raise _bad_request("filename is required")
    path = await off_loop(_existing_file, request.app[RUNTIME].folders, request.query.get("type", "output"),
                          request.query.get("subfolder", ""), filename)
    preview, channel = request.query.get("preview"), request.query.get("channel")
    if (preview or channel) and path.suffix.lower() in CONVERTIBLE_SUFFIXES:
        body, fmt = await off_loop(_converted_image, path, preview, channel)
        extension = fmt.lower()
        return web.Response(body=body, content_type=f"image/{extension}", headers={
            hdrs.CONTENT_DISPOSITION: content_disposition("inline", f"{path.stem}.{extension}")})
    return file_response(path, path.name)


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
    """(client file name, bytes, text fields) of a multipart upload; the file is read off the loop."""
    post = await request.post()
    upload = post.get("image")
    if upload is None or not hasattr(upload, "file") or not upload.filename:
        raise _bad_request("multipart field 'image' with a file name is required")
    fields = {key: str(value) for key, value in post.items() if isinstance(value, str)}
    data = await off_loop(upload.file.read)  # aiohttp spools large parts to a temporary file
    await off_loop(_check_image, data, upload.filename)
    return upload.filename, data, fields


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
    return web.json_response(await off_loop(_store_upload, request.app[RUNTIME].folders, fields, filename, data))


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
        original = await off_loop(_existing_file, folders, *where)
    except web.HTTPNotFound:
        raise _bad_request(f"original image not found: {where[2]}", 404) from None
    merged = await off_loop(_merge_alpha, original, data)
    return web.json_response(await off_loop(_store_upload, folders, {**fields, "overwrite": "true"}, filename, merged))


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
