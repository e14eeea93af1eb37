"""Reading model files: safetensors weights only, JSON settings, and diffusers folder layout.

Pickle-based formats (.ckpt, .pt, .bin, .pth) can run arbitrary code when loaded, so they are
refused by name before anything is opened. Every error names the file it is about.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from modeling.errors import ModelFileError

WEIGHT_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
# A folder holding a whole model in diffusers layout is marked by this file.
MODEL_INDEX = "model_index.json"
SETTINGS_FILE = "flowmill.json"
CONFIG_FILE = "config.json"


def load_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """All tensors of one safetensors file, on the CPU; anything else is a ModelFileError."""
    path = Path(path)
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        hint = " (a pickle format, which can run code when loaded)" if path.suffix.lower() in PICKLE_SUFFIXES else ""
        kind = repr(path.suffix) if path.suffix else "files without a suffix"
        raise ModelFileError(
            f"{path}: only safetensors files ({', '.join(WEIGHT_SUFFIXES)}) are loaded, not {kind}{hint}; "
            f"convert the weights to safetensors"
        )
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(f"{path}: not a readable safetensors file ({error})") from None


def weights_fingerprint(path: Path) -> str | None:
    """Names, sizes and mtimes of the file or folder of files at `path` (what a model reference keys on, so an
    edited file is a new reference); None when nothing is there."""
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(item for item in path.rglob("*") if item.is_file())
    else:
        return None
    stamps = []
    for item in files:
        info = item.stat()
        stamps.append(f"{item.relative_to(path.parent).as_posix()}:{info.st_size}:{info.st_mtime_ns}")
    return "|".join(stamps)


def read_metadata(path: Path) -> dict[str, str]:
    """The string metadata in a safetensors header (`__metadata__`), {} when there is none."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as file:
            return dict(file.metadata() or {})
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(f"{path}: not a readable safetensors file ({error})") from None


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, or a ModelFileError naming it."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{path}: not a readable JSON file ({error})") from None
    if not isinstance(value, dict):
        raise ModelFileError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def is_model_folder(path: Path) -> bool:
    """Whether `path` is a whole model in diffusers layout (marked by model_index.json)."""
    return path.is_dir() and (path / MODEL_INDEX).is_file()


def weight_files(folder: Path) -> list[Path]:
    """The weights of one component folder: one safetensors file, or the shards an index lists."""
    files = sorted(item for item in folder.iterdir() if item.is_file() and item.suffix.lower() in WEIGHT_SUFFIXES)
    if not files:
        pickled = sorted(item.name for item in folder.iterdir() if item.suffix.lower() in PICKLE_SUFFIXES)
        found = f" (found only {', '.join(pickled)}: pickle formats are never loaded)" if pickled else ""
        raise ModelFileError(f"{folder}: no safetensors weights in this folder{found}")
    if len(files) > 1 and not any(item.name.endswith(".safetensors.index.json") for item in folder.iterdir()):
        raise ModelFileError(
            f"{folder}: several weight files ({', '.join(item.name for item in files)}) and no "
            f"*.safetensors.index.json saying they are shards of one model; keep one"
        )
    return files


def load_weights(files: list[Path]) -> dict[str, torch.Tensor]:
    """The merged state dict of a file and its shards; a key in two shards is an error."""
    state: dict[str, torch.Tensor] = {}
    for file in files:
        part = load_state_dict(file)
        clash = next((key for key in part if key in state), None)
        if clash is not None:
            raise ModelFileError(f"{file}: weight {clash!r} also appears in another shard")
        state.update(part)
    return state


def component_folder(model_folder: Path, names: tuple[str, ...], component: str) -> Path:
    """The subfolder of a diffusers-layout model holding `component` (e.g. transformer/)."""
    for name in names:
        if (model_folder / name).is_dir():
            return model_folder / name
    raise ModelFileError(
        f"{model_folder}: this model folder has no {component} (expected a subfolder named "
        f"{' or '.join(repr(name) for name in names)})"
    )


def tokenizer_folder(path: Path) -> Path:
    """Where the tokenizer of the text encoder at `path` lives.

    A model folder keeps it in tokenizer/; a component folder holds it itself or beside it; a
    lone file `name.safetensors` looks for `name.tokenizer/`, then `tokenizer/` beside it.
    """
    if path.is_dir():
        candidates = [path, path / "tokenizer", path.parent / "tokenizer"]
    else:
        candidates = [path.with_name(path.stem + ".tokenizer"), path.parent / "tokenizer"]
    for candidate in candidates:
        if (candidate / "vocab.json").is_file() and (candidate / "merges.txt").is_file():
            return candidate
    raise ModelFileError(
        f"{path}: no tokenizer found for this text encoder; Flowmill never downloads one. Put the "
        f"tokenizer files (vocab.json, merges.txt, tokenizer_config.json) in "
        f"{' or '.join(str(candidate) for candidate in candidates)}"
    )
