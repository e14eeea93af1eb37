"""The PNG writer behind SaveImage and PreviewImage: names, metadata, atomic writes, ui entries.

Files are named by `engine.media.next_output_name` (ComfyUI's `<prefix>_00001_.png`),
carry the `prompt` chunk plus one chunk per `extra_pnginfo` key, exactly as ComfyUI writes
them (comfyui-compat.md §14.4), and are written atomically so a crash never leaves a
truncated PNG in the output folder. This module declares no nodes.
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path
from typing import Any

import torch

from engine.media import atomic_write_bytes, encode_png, next_output_name, tensor_to_pil
from engine.node_api import NodeContext
from engine.paths import resolve_under
from nodes.image._pixels import require_image


def png_text_chunks(ctx: NodeContext) -> dict[str, str]:
    """The `prompt` and `extra_pnginfo` text chunks for images saved by this prompt."""
    chunks: dict[str, str] = {}
    if ctx.prompt:
        chunks["prompt"] = json.dumps(ctx.prompt)
    for key, value in (ctx.extra_pnginfo or {}).items():
        chunks[key] = json.dumps(value)
    return chunks


def write_images(
    ctx: NodeContext,
    node: str,
    images: torch.Tensor,
    *,
    root: Path,
    folder_type: str,
    prefix: str,
    compress_level: int,
) -> list[dict[str, Any]]:
    """Write each image of the batch as a PNG under `root`; return ComfyUI's ui image entries.

    The output folder is scanned once per call, not once per image: the batch takes the next
    free counter and the ones after it, the names the per-image scan used to find.
    """
    require_image(node, "images", images)
    chunks = png_text_chunks(ctx)
    total = images.shape[0]
    height, width = int(images.shape[1]), int(images.shape[2])  # one size for the whole batch
    subfolder, first_name = next_output_name(root, prefix, width=width, height=height)
    written: list[dict[str, Any]] = []
    for index in range(total):
        picture = tensor_to_pil(images[index])
        filename = _numbered_name(first_name, index)
        target = resolve_under(root, posixpath.join(subfolder, filename))
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, encode_png(picture, chunks, compress_level=compress_level))
        written.append({"filename": filename, "subfolder": subfolder, "type": folder_type})
        ctx.progress(index + 1, total)
    return written


def _numbered_name(first_name: str, offset: int) -> str:
    """`x_00007_.png` with its counter moved on by `offset` (`next_output_name`'s format)."""
    stem, counter, extension = first_name.rsplit("_", 2)
    return f"{stem}_{int(counter) + offset:05}_{extension}"
