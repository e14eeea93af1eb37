"""Workflows embedded in WebP images and WebM/MP4 videos, read without decoding a frame.

ComfyUI's savers embed the API prompt and the canvas workflow in every format they write
(comfyui-compat.md §14.4). PNG text chunks are read by `engine.media.read_png_text`; this
module reads the other two layouts:

- WebP (still and animated, `SaveAnimatedWEBP` and WebP image saves): an `EXIF` chunk whose
  first IFD holds ASCII tags of the form "<key>:<json>". ComfyUI puts "prompt:{...}" in
  0x0110 (Model), "workflow:{...}" in 0x010F (Make), and any further extra_pnginfo keys in
  0x010E downwards; the frontend reads every tag of that form, and so does this.
- WebM and MP4 (`SaveWEBM`, `SaveVideo`): container tags "prompt" and "workflow" holding
  JSON text, written through PyAV. Matroska upper-cases tag names; MP4 keeps custom tags
  only when written with `movflags=use_metadata_tags`, as ComfyUI does. Files written by
  the VideoHelperSuite pack carry both in one JSON `comment` tag, which is read too.

Sizes are bounded: the WebP EXIF chunk is found by walking the RIFF chunk headers and read
only if it is at most `MAX_EXIF_BYTES`, and no embedded text over `MAX_TEXT_BYTES` is
returned. Pillow and PyAV are imported inside the readers; nothing here imports torch or
aiohttp, and nothing is kept at module level but constants.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, BinaryIO

WORKFLOW_KEYS = ("workflow", "prompt")
MAX_EXIF_BYTES = 64 * 1024 * 1024
MAX_TEXT_BYTES = 32 * 1024 * 1024
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"  # Matroska and WebM
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class MetadataError(ValueError):
    """An embedded-metadata container that cannot be read; the message names the file."""


def media_kind(path: Path) -> str | None:
    """"png", "webp", "video" or None, from the file's first bytes (the suffix may lie)."""
    try:
        with open(path, "rb") as file:
            head = file.read(16)
    except OSError as error:
        raise MetadataError(f"{path}: cannot read the file: {error}") from error
    if head[:8] == _PNG_MAGIC:
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] == _EBML_MAGIC or head[4:8] == b"ftyp":
        return "video"
    return None


def read_embedded_metadata(path: Path) -> dict[str, str]:
    """The embedded "workflow" and "prompt" texts of a WebP image or a WebM/MP4 video.

    Keys that are absent are simply missing; an unreadable or oversized container raises
    MetadataError naming the file and the problem.
    """
    kind = media_kind(path)  # PNG text chunks are engine.media's to read
    if kind == "webp":
        return read_webp_metadata(path)
    if kind == "video":
        return read_video_metadata(path)
    raise MetadataError(f"{path}: not a WebP image or a WebM/MP4 video")


# --------------------------------------------------------------------------- WebP


def read_webp_metadata(path: Path) -> dict[str, str]:
    """"<key>:<json>" EXIF tags of a WebP file, as {key: json text} for the workflow keys."""
    from PIL import Image

    exif_bytes = _webp_exif_chunk(path)
    if exif_bytes is None:
        return {}
    exif = Image.Exif()
    try:
        exif.load(exif_bytes)
        tags = dict(exif.items())
    # Pillow's TIFF directory parser raises many kinds of errors on damaged data (struct,
    # syntax, key, index, value); every one of them means the same: the EXIF is unreadable.
    except Exception as error:  # noqa: BLE001
        raise MetadataError(f"{path}: the WebP's EXIF data is unreadable: {error}") from error
    found: dict[str, str] = {}
    for value in tags.values():
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        if not isinstance(text, str):
            continue
        key, colon, payload = text.partition(":")
        if colon and key in WORKFLOW_KEYS and key not in found:
            found[key] = _bounded(path, key, payload.rstrip("\x00"))
    return found


def _webp_exif_chunk(path: Path) -> bytes | None:
    """The payload of the RIFF `EXIF` chunk, found by walking chunk headers (frames are skipped)."""
    try:
        with open(path, "rb") as file:
            size = file.seek(0, 2)
            file.seek(0)
            header = file.read(12)
            if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WEBP":
                raise MetadataError(f"{path}: not a WebP file (no RIFF/WEBP header)")
            end = min(8 + struct.unpack("<I", header[4:8])[0], size)
            return _find_chunk(file, path, b"EXIF", 12, end)
    except OSError as error:
        raise MetadataError(f"{path}: cannot read the WebP file: {error}") from error


def _find_chunk(file: BinaryIO, path: Path, wanted: bytes, position: int, end: int) -> bytes | None:
    while position + 8 <= end:
        file.seek(position)
        fourcc, length = struct.unpack("<4sI", file.read(8))
        if fourcc == wanted:
            if length > MAX_EXIF_BYTES:
                raise MetadataError(f"{path}: the WebP's EXIF chunk is {length:,} bytes, more than the limit of "
                                    f"{MAX_EXIF_BYTES:,}")
            data = file.read(length)
            if len(data) < length:
                raise MetadataError(f"{path}: the WebP's EXIF chunk is truncated ({len(data):,} of {length:,} bytes)")
            return data
        position += 8 + length + (length & 1)  # chunks are padded to an even size
    return None


# --------------------------------------------------------------------------- WebM / MP4


def read_video_metadata(path: Path) -> dict[str, str]:
    """The container tags "workflow" and "prompt" of a video file, case-insensitively."""
    try:
        import av
    except ImportError as error:  # an optional dependency in principle: say which package
        raise MetadataError(f"{path}: reading video metadata needs PyAV (pip install av)") from error
    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            tags = {str(key).lower(): value for key, value in container.metadata.items()}
    except (av.FFmpegError, OSError, ValueError) as error:
        raise MetadataError(f"{path}: not a readable video file: {error}") from error
    found = {key: _bounded(path, key, tags[key]) for key in WORKFLOW_KEYS if isinstance(tags.get(key), str)}
    if not found and isinstance(tags.get("comment"), str):
        found = _from_comment(path, tags["comment"])
    return found


def _from_comment(path: Path, comment: str) -> dict[str, str]:
    # VideoHelperSuite writes {"prompt": {...}, "workflow": {...}} as one JSON comment.
    if len(comment) > MAX_TEXT_BYTES or not comment.lstrip().startswith("{"):
        return {}
    try:
        data: Any = json.loads(comment)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {key: _bounded(path, key, value if isinstance(value, str) else json.dumps(value))
            for key, value in data.items() if key in WORKFLOW_KEYS and value is not None}


def _bounded(path: Path, key: str, text: str) -> str:
    if len(text) > MAX_TEXT_BYTES:
        raise MetadataError(f"{path}: the embedded '{key}' is {len(text):,} characters, more than the limit of "
                            f"{MAX_TEXT_BYTES:,}")
    return text
