"""Image file I/O shared by nodes and the server: safe decoding, tensors, PNG metadata, output names.

This module owns every place where Flowmill turns bytes into pixels or pixels into files:

- `open_image_safely` is the only decoder entry point. It opens a fixed set of formats
  (no FITS, TIFF, PSD, ...) and refuses images above a pixel limit before any pixel data
  is decoded (security.md §1.8 and §3 item 8).
- `pil_to_tensor` / `tensor_to_pil` convert between Pillow and ComfyUI's IMAGE and MASK
  tensor layouts.
- `atomic_write_bytes` writes files so a crash never leaves a partial output behind.
- `encode_png` / `read_png_text` write and read the `prompt` / `workflow` text chunks
  (comfyui-compat.md §14.4). `check_png_text_chunks` bounds them (1 MiB decompressed per chunk,
  64 MiB in all) before Pillow reads a byte of text, whatever a plugin set Pillow's limits to.
- `next_output_name` implements ComfyUI's `<prefix>_00001_.png` counter inside a root.

It imports Pillow, numpy and torch only: never aiohttp, never nodes/. Nothing here changes
process-global state (Pillow's `MAX_IMAGE_PIXELS`, `LOAD_TRUNCATED_IMAGES`, the warnings
filter list), because the server decodes uploads on other threads while a prompt runs.
"""

from __future__ import annotations

import datetime
import io
import os
import posixpath
import re
import secrets
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image, ImageOps, ImageSequence
from PIL.PngImagePlugin import PngInfo

from engine.paths import UnsafePathError, resolve_under

ImageSource = str | os.PathLike | bytes

# The only formats Flowmill decodes. Everything else (FITS, TIFF, PSD, ...) is refused up
# front: rarely used for generation inputs, and where Pillow's decompression-bomb bugs live
# (CVE-2026-40192 was a FITS GZIP bomb).
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
# Pillow's own default MAX_IMAGE_PIXELS (1 GiB of 24-bit pixels / 3). Kept as a constant so
# a plugin that sets Image.MAX_IMAGE_PIXELS = None cannot switch our check off.
DEFAULT_MAX_PIXELS = 1024 * 1024 * 1024 // 4 // 3
# A budget over all frames of an animated image: 256 Mi pixels is ~3 GiB as float32 RGB.
DEFAULT_MAX_TOTAL_PIXELS = 256 * 1024 * 1024
# Temp files are hidden (so folder listings never offer a half-written file) and carry a
# marker, so start-up cleanup can never delete a user's own "*.tmp" file.
TEMP_MARKER = ".flowmill-partial"
# PNG keywords are 1-79 Latin-1 characters (PNG spec §11.3.4.3).
_PNG_KEYWORD = re.compile(r"^[\x20-\x7e\xa1-\xff]{1,79}$")
# PNG text limits (Pillow's MAX_TEXT_CHUNK and MAX_TEXT_MEMORY defaults, kept as our own constants
# so a plugin cannot raise them): one chunk's text after decompression, and all chunks together.
MAX_PNG_TEXT_CHUNK = 1024 * 1024
MAX_PNG_TEXT_TOTAL = 64 * 1024 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_HIGH_BIT_DEPTH_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
_MODES_BY_CHANNELS = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


class ImageDecodeError(ValueError):
    """An image could not be decoded safely; the message names the file and the reason."""


# ---------------------------------------------------------------------------------------------
# Decoding


def _describe(source: ImageSource, name: str | None) -> str:
    if name is not None:
        return name
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else repr(source)


def effective_pixel_limit(max_pixels: int | None = None) -> int:
    """The strictest of `max_pixels`, our default and Pillow's current global limit."""
    limits = [DEFAULT_MAX_PIXELS]
    if max_pixels is not None:
        limits.append(max_pixels)
    if Image.MAX_IMAGE_PIXELS is not None:  # read, never written: someone may have lowered it
        limits.append(Image.MAX_IMAGE_PIXELS)
    return min(limits)


def check_pixel_count(width: int, height: int, limit: int, what: str) -> None:
    """Raise ImageDecodeError if a `width` x `height` image exceeds `limit` pixels."""
    pixels = max(1, width) * max(1, height)
    if pixels > limit:
        raise ImageDecodeError(
            f"{what}: image is {width}x{height} = {pixels:,} pixels, more than the limit of {limit:,} "
            f"(refused as a possible decompression bomb)"
        )


def _bomb_error(what: str, error: Image.DecompressionBombError, limit: int) -> ImageDecodeError:
    """Restate Pillow's DecompressionBombError (raised at twice its limit) with our limit."""
    found = re.search(r"\((\d+) pixels\)", str(error))
    size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
    return ImageDecodeError(
        f"{what}: image has {size}, more than the limit of {limit:,} (refused as a possible decompression bomb)"
    )


def open_image_safely(
    source: ImageSource, *, max_pixels: int | None = None, name: str | None = None
) -> Image.Image:
    """Open and decode the first frame of an image, refusing unsafe formats and sizes.

    `source` is a path or the file's bytes; `name` is used in error messages instead of the
    path (e.g. an upload's client file name). `max_pixels` can only tighten the limit.
    The first frame is decoded here so truncated files fail now, as ImageDecodeError. Use the
    result as a context manager: a multi-frame file stays open until it is closed.
    """
    what = _describe(source, name)
    limit = effective_pixel_limit(max_pixels)
    fp: str | os.PathLike | IO[bytes] = io.BytesIO(source) if isinstance(source, bytes) else source
    check_png_text_chunks(source, name=name)
    try:
        image = Image.open(fp, formats=list(ALLOWED_FORMATS))
    except Image.DecompressionBombError as error:  # raised inside open, before our check runs
        raise _bomb_error(what, error, limit) from error
    except Image.UnidentifiedImageError as error:
        raise ImageDecodeError(
            f"{what}: not an image in a supported format (allowed: {', '.join(ALLOWED_FORMATS)})"
        ) from error
    except OSError as error:
        # strerror, not str(error): the latter repeats the real path, which `name` may be hiding.
        raise ImageDecodeError(f"{what}: cannot be read: {error.strerror or type(error).__name__}") from error
    except ValueError as error:  # Pillow's own text-chunk limits, should ours ever be looser
        raise ImageDecodeError(f"{what}: refused while reading its header: {error}") from error
    try:
        # Our check sits at (or below) Pillow's DecompressionBombWarning threshold, so it turns
        # that warning into an error without swapping the process-global warnings filters,
        # which `warnings.catch_warnings` does and which is not thread-safe before 3.14.
        check_pixel_count(image.width, image.height, limit, what)
        image.load()
    except ImageDecodeError:
        image.close()
        raise
    except Image.DecompressionBombError as error:
        image.close()
        raise _bomb_error(what, error, limit) from error
    except (OSError, SyntaxError, ValueError) as error:
        image.close()
        raise ImageDecodeError(f"{what}: corrupt or truncated {image.format} data: {error}") from error
    return image


# ---------------------------------------------------------------------------------------------
# Tensors


def _frame_to_rgb_array(frame: Image.Image) -> np.ndarray:
    """An [H, W, 3] float32 array in 0..1 for one frame, keeping 16-bit precision."""
    if frame.mode in _HIGH_BIT_DEPTH_MODES:
        # 16-bit greyscale PNGs arrive as integer modes; ComfyUI squeezes them through 8 bits.
        grey = np.asarray(frame, dtype=np.float32) / 65535.0
        return np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=-1)
    return np.asarray(frame.convert("RGB"), dtype=np.float32) / 255.0


def _frame_mask(frame: Image.Image) -> np.ndarray:
    """ComfyUI's mask: 1 - alpha where the frame has transparency, else all zeros (HxW)."""
    if "A" in frame.getbands():
        alpha = frame.getchannel("A")
    elif frame.mode == "P" and "transparency" in frame.info:
        alpha = frame.convert("RGBA").getchannel("A")
    else:
        # ComfyUI returns a 64x64 zero placeholder here. We return HxW so the mask lines up
        # with its image: frames with and without alpha can then share one batch, and
        # consumers need no resize. ComfyUI nodes resize masks anyway, so both shapes work.
        return np.zeros((frame.height, frame.width), dtype=np.float32)
    return 1.0 - np.asarray(alpha, dtype=np.float32) / 255.0


def pil_to_tensor(
    image: Image.Image, *, max_total_pixels: int = DEFAULT_MAX_TOTAL_PIXELS, name: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert an opened image to (IMAGE [B,H,W,3], MASK [B,H,W]) as ComfyUI's LoadImage does.

    Each frame is EXIF-transposed. Frames whose size differs from the first frame's are
    skipped (as ComfyUI does); MPO files (stereo JPEGs) contribute their first frame only.
    Raises ImageDecodeError when the frames together exceed `max_total_pixels`; `name` is
    the file name used in messages (default: the image's own file name).
    """
    what = name or getattr(image, "filename", "") or "image"
    frames: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    size: tuple[int, int] | None = None
    try:
        for frame in ImageSequence.Iterator(image):
            # GIF frames can grow the canvas on seek; re-check before decoding each one.
            check_pixel_count(frame.width, frame.height, effective_pixel_limit(), what)
            upright = ImageOps.exif_transpose(frame)
            size = size or upright.size
            if upright.size != size:
                continue
            if (len(frames) + 1) * size[0] * size[1] > max_total_pixels:
                raise ImageDecodeError(
                    f"{what}: {len(frames) + 1} frames of {size[0]}x{size[1]} exceed the budget of "
                    f"{max_total_pixels:,} pixels in total"
                )
            frames.append(_frame_to_rgb_array(upright))
            masks.append(_frame_mask(upright))
            if image.format == "MPO":
                break
    except Image.DecompressionBombError as error:  # a GIF frame grew the canvas past Pillow's limit
        raise _bomb_error(what, error, effective_pixel_limit()) from error
    except (OSError, SyntaxError, EOFError) as error:
        raise ImageDecodeError(f"{what}: corrupt frame data: {error}") from error
    if not frames:
        raise ImageDecodeError(f"{what}: contains no frames")
    return torch.from_numpy(np.stack(frames)), torch.from_numpy(np.stack(masks))


def quantize_8bit(image: torch.Tensor) -> np.ndarray:
    """ComfyUI's 8-bit quantisation, `clip(255 * x, 0, 255)` truncated to uint8, as a numpy array.

    Truncating, not rounding, is what ComfyUI's SaveImage and PreviewImage do, so the same
    graph writes the same PNG bytes in both. It also keeps 8-bit round trips exact: for every
    v in 0..255, float32 v/255 times 255 truncates back to v. The product is taken in the
    image's own float precision, as ComfyUI's numpy code does (NaN becomes 0).
    """
    source = image.detach().cpu()
    if source.dtype not in (torch.float16, torch.float32, torch.float64):
        source = source.to(torch.float32)
    return torch.nan_to_num(source * 255.0, nan=0.0).clamp(0.0, 255.0).to(torch.uint8).numpy()


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """Convert one image ([1,H,W,C] or [H,W,C], C in 1..4; values 0..1) to an 8-bit PIL image."""
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ValueError(f"tensor_to_pil expects a batch of one image, got shape {tuple(image.shape)}")
        image = image[0]
    if image.ndim != 3 or image.shape[-1] not in _MODES_BY_CHANNELS:
        raise ValueError(f"tensor_to_pil expects [H, W, C] with C in 1..4, got shape {tuple(image.shape)}")
    array = quantize_8bit(image)
    mode = _MODES_BY_CHANNELS[array.shape[-1]]
    return Image.fromarray(array[..., 0] if mode == "L" else array, mode=mode)


# ---------------------------------------------------------------------------------------------
# Files


def _fsync_directory(folder: Path) -> None:
    # Makes the rename itself durable. Directories cannot be opened for fsync on Windows.
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def temp_path_for(path: Path) -> Path:
    """The hidden sibling that `atomic_write_bytes` writes before renaming it over `path`."""
    # A random part keeps two writers of the same name from sharing one temp file.
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_MARKER}.tmp")


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write `data` to `path` so readers see either the old file or the complete new one.

    Writes a temp file in the same directory (same filesystem, so the rename is atomic),
    fsyncs it, `os.replace`s it over `path` and fsyncs the directory. On any failure the
    temp file is removed and the original file is untouched. The directory must exist.
    """
    target = Path(path)
    temporary = temp_path_for(target)
    try:
        with open(temporary, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def remove_stale_temp_files(folder: Path | str) -> list[Path]:
    """Delete temp files left under `folder` by interrupted atomic writes; returns what was removed.

    Call at start-up only: a write in progress elsewhere would lose its temp file.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    removed = []
    for candidate in root.rglob(f".*{TEMP_MARKER}.tmp"):
        if candidate.is_file() and not candidate.is_symlink():
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


# ---------------------------------------------------------------------------------------------
# PNG metadata


def encode_png(image: Image.Image, text_chunks: Mapping[str, str] | None = None, *, compress_level: int = 4) -> bytes:
    """Encode `image` as PNG with one text chunk per item of `text_chunks`.

    Latin-1 values are written as tEXt (what ComfyUI writes; JSON from `json.dumps` is
    ASCII); other values fall back to iTXt. Keys must be valid PNG keywords.
    """
    info = PngInfo()
    for key, value in (text_chunks or {}).items():
        if not _PNG_KEYWORD.match(key) or key != key.strip() or "  " in key:
            raise ValueError(f"PNG text key {key!r} is not a valid keyword (1-79 printable Latin-1 characters)")
        info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=compress_level)
    return buffer.getvalue()


def check_png_text_chunks(source: ImageSource, *, name: str | None = None) -> None:
    """Raise ImageDecodeError if a PNG's text chunks exceed MAX_PNG_TEXT_CHUNK each or MAX_PNG_TEXT_TOTAL.

    Walks the chunk headers (seeking over image data) and decompresses zTXt/iTXt text with a
    bound, so a 100 MB zTXt bomb costs 1 MiB of memory to refuse. Not a PNG: returns at once.
    """
    what = _describe(source, name)
    try:
        handle: IO[bytes] = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    except OSError as error:
        raise ImageDecodeError(f"{what}: cannot be read: {error.strerror or type(error).__name__}") from error
    with handle:
        if handle.read(8) != PNG_SIGNATURE:
            return
        total = 0
        while True:
            header = handle.read(8)
            if len(header) < 8:
                return  # truncated: Pillow reports it
            length, kind = struct.unpack(">I4s", header)
            if kind in (b"tEXt", b"zTXt", b"iTXt"):
                data = handle.read(length)
                size = _png_text_size(kind, data)
                keyword = data.split(b"\0", 1)[0].decode("latin-1")[:79]
                if size > MAX_PNG_TEXT_CHUNK:
                    raise ImageDecodeError(
                        f"{what}: PNG text chunk {keyword!r} holds more than {MAX_PNG_TEXT_CHUNK:,} bytes of text "
                        "(refused: metadata that large is not a workflow)")
                total += size
                if total > MAX_PNG_TEXT_TOTAL:
                    raise ImageDecodeError(
                        f"{what}: PNG text chunks hold more than {MAX_PNG_TEXT_TOTAL:,} bytes of text in total "
                        "(refused)")
                handle.seek(4, os.SEEK_CUR)  # CRC
            elif kind == b"IEND":
                return
            else:
                handle.seek(length + 4, os.SEEK_CUR)


def _png_text_size(kind: bytes, data: bytes) -> int:
    """Bytes of text in one tEXt/zTXt/iTXt chunk; compressed text is inflated only up to the limit + 1."""
    keyword, _, rest = data.partition(b"\0")
    if kind == b"tEXt":
        return len(rest)
    if kind == b"zTXt":
        compressed = rest[1:]  # after the compression method byte
    else:  # iTXt: flag, method, language\0, translated keyword\0, text
        flag = rest[:1]
        text = rest[2:].split(b"\0", 2)[-1]
        if flag != b"\x01":
            return len(text)
        compressed = text
    inflater = zlib.decompressobj()
    try:
        inflated = inflater.decompress(compressed, MAX_PNG_TEXT_CHUNK + 1)
    except zlib.error:
        return 0  # corrupt text: Pillow skips it (or reports it), it costs no memory here
    return len(inflated)


def read_png_text(source: ImageSource, *, name: str | None = None) -> dict[str, str]:
    """The tEXt/zTXt/iTXt chunks of a PNG as a plain dict; empty for other formats."""
    with open_image_safely(source, name=name) as image:
        if image.format != "PNG":
            return {}
        try:
            chunks = image.text  # type: ignore[attr-defined]
        except ValueError as error:  # Pillow's text-memory limits (MAX_TEXT_CHUNK / MAX_TEXT_MEMORY)
            raise ImageDecodeError(f"{_describe(source, name)}: unreadable PNG text chunks: {error}") from error
        return {str(key): str(value) for key, value in chunks.items()}


# ---------------------------------------------------------------------------------------------
# Output names


def substitute_prefix_variables(prefix: str, *, width: int | None = None, height: int | None = None) -> str:
    """Expand ComfyUI's %width%, %height%, %year%, %month%, %day%, %hour%, %minute%, %second%."""
    now = datetime.datetime.now()
    values = {
        "year": str(now.year), "month": f"{now.month:02}", "day": f"{now.day:02}",
        "hour": f"{now.hour:02}", "minute": f"{now.minute:02}", "second": f"{now.second:02}",
    }
    if width is not None:
        values["width"] = str(width)
    if height is not None:
        values["height"] = str(height)
    for key, value in values.items():
        prefix = prefix.replace(f"%{key}%", value)
    return prefix


def _next_counter(folder: Path, stem: str) -> int:
    """One more than the highest N among files named `<stem>_N_...` (ComfyUI's rule)."""
    if not folder.is_dir():
        return 1
    pattern = re.compile(re.escape(os.path.normcase(stem)) + r"_(\d+)_")
    highest = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            match = pattern.match(os.path.normcase(entry.name))
            if match:
                highest = max(highest, int(match.group(1)))
    return highest + 1


def next_output_name(
    folder: Path, prefix: str, extension: str = "png", *, width: int | None = None, height: int | None = None
) -> tuple[str, str]:
    """Return (subfolder, filename) for the next `<prefix>_00001_.<extension>` under `folder`.

    `prefix` may name a subfolder ("renders/cat"); it must stay inside `folder`, else
    UnsafePathError. `subfolder` uses '/' separators and is "" for the root itself. The
    subfolder is not created here.
    """
    expanded = substitute_prefix_variables(prefix, width=width, height=height).replace("\\", "/")
    normalised = posixpath.normpath(expanded) if expanded else ""
    subfolder, stem = posixpath.split(normalised)
    if not stem or stem in (".", ".."):
        raise ValueError(f"filename_prefix {prefix!r} does not end in a file name")
    try:
        # Check the whole prefix too, not only its folder: the stem may hide a NUL byte.
        resolve_under(folder, normalised)
        directory = resolve_under(folder, subfolder or ".")
    except UnsafePathError as error:
        raise UnsafePathError(f"filename_prefix {prefix!r} would save outside the output folder: {error}") from error
    return subfolder, f"{stem}_{_next_counter(directory, stem):05}_.{extension}"
