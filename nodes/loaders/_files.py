"""Resolving model names under models/ for the loader nodes, and their cache fingerprints.

Every name goes through `Folders.resolve_model` (the one containment rule), so a workflow
cannot make a loader read outside its model folder. The fingerprint is the size and
modification time of every file behind the name: cheap enough to compute on every prompt,
and a replaced checkpoint (or a file inside a diffusers-layout folder) invalidates the
cached model. This module declares no nodes.
"""

from __future__ import annotations

from pathlib import Path

from engine.node_api import NodeContext, UnsafePathError


def resolve_model_file(ctx: NodeContext, node: str, input_name: str, folder: str, name: object) -> Path:
    """The real path of model `name` in models/<folder>, or an error naming node and input."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{node}: {input_name} must be a file name from models/{folder}, got {name!r}")
    try:
        path = ctx.folders.resolve_model(folder, name)
    except UnsafePathError as error:
        raise ValueError(f"{node}: {input_name} {name!r} is not a valid name inside models/{folder}: {error}") from None
    if not path.exists():
        raise FileNotFoundError(
            f"{node}: {input_name} {name!r} was not found in models/{folder} "
            f"(expected a .safetensors file or a diffusers folder listed there)"
        )
    return path


def model_fingerprint(ctx: NodeContext, folder: str, name: object) -> str | float:
    """Sizes and mtimes of the files behind `name`; NaN (never cached) when it cannot be resolved."""
    if not isinstance(name, str):
        return float("nan")
    try:
        path = ctx.folders.resolve_model(folder, name)
    except UnsafePathError:
        return float("nan")
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(item for item in path.rglob("*") if item.is_file())
    else:
        return float("nan")  # missing: the node itself reports the real error
    stamps = []
    for item in files:
        info = item.stat()
        stamps.append(f"{item.relative_to(path.parent).as_posix()}:{info.st_size}:{info.st_mtime_ns}")
    return "|".join(stamps)
