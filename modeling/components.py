"""Finding one component's weights: in a lone file, a component folder, a diffusers-layout
model folder, or under ComfyUI's key prefixes in a single-file checkpoint.

The result carries the state dict, a name for messages and the stored config that applies,
so the loaders never care which layout the user chose. A config comes from the component
folder's config.json, or for a file from the "config" entry of its safetensors metadata (a
JSON object, with one section per component named as the diffusers subfolders, as LTX-Video
files carry it), else from a config.json beside a lone component file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from modeling.errors import ModelFileError
from modeling.families import COMPONENTS, Component
from modeling.files import (
    CONFIG_FILE,
    component_folder,
    is_model_folder,
    load_state_dict,
    load_weights,
    read_json,
    read_metadata,
    weight_files,
)
from modeling.state_dicts import with_prefix

# Subfolders of a diffusers-layout model (diffusers names the FLUX/SD3 denoiser "transformer",
# SD's "unet").
FOLDER_NAMES: Mapping[Component, tuple[str, ...]] = MappingProxyType({
    "diffusion_model": ("transformer", "unet"),
    "vae": ("vae",),
    "text_encoder": ("text_encoder",),
})
# Key prefixes of ComfyUI's single-file checkpoints. "text_encoders." is followed by the
# encoder's name (clip_l, t5xxl), one group per encoder.
CHECKPOINT_PREFIXES: Mapping[Component, tuple[str, ...]] = MappingProxyType({
    "diffusion_model": ("model.diffusion_model.",),
    "vae": ("vae.", "first_stage_model."),
    "text_encoder": ("text_encoders.", "cond_stage_model."),
})


@dataclass(frozen=True)
class ComponentWeights:
    """One component's stored weights, where they came from, and the files beside them."""

    state: dict[str, torch.Tensor]
    origin: str
    config: Mapping[str, Any] | None = None
    config_source: str | None = None  # where `config` was read, for messages
    folder: Path | None = None


def locate(path: Path, component: Component) -> list[ComponentWeights]:
    """Every candidate for `component` at `path` (several only for multi-encoder checkpoints)."""
    if path.is_dir():
        folder = component_folder(path, FOLDER_NAMES[component], component) if is_model_folder(path) else path
        files = weight_files(folder)
        origin = str(files[0]) if len(files) == 1 else f"{folder} ({len(files)} shards)"
        config_file = folder / CONFIG_FILE
        if not config_file.is_file():
            return [ComponentWeights(load_weights(files), origin, folder=folder)]
        return [ComponentWeights(load_weights(files), origin, read_json(config_file), str(config_file), folder)]
    if not path.exists():
        raise ModelFileError(f"{path}: no such file or folder")
    return in_file(path, load_state_dict(path), component)


def in_file(path: Path, state: dict[str, torch.Tensor], component: Component) -> list[ComponentWeights]:
    """`component` in the weights `state` read from file `path`: the whole file, or its prefixed part."""
    stored = _metadata_config(path, component, whole=not is_checkpoint(state))
    source = f"{path} (metadata \"config\")"
    if not is_checkpoint(state):
        if stored is None and (path.parent / CONFIG_FILE).is_file():
            # A lone component file takes the config.json of the folder it sits in.
            return [ComponentWeights(state, str(path), read_json(path.parent / CONFIG_FILE),
                                     str(path.parent / CONFIG_FILE))]
        return [ComponentWeights(state, str(path), stored, source if stored is not None else None)]
    parts = checkpoint_parts(state, component)
    if not parts:
        present = [name for name in COMPONENTS if checkpoint_parts(state, name)]
        raise ModelFileError(
            f"{path}: this checkpoint has no {component.replace('_', ' ')} (keys under "
            f"{', '.join(repr(prefix + '*') for prefix in CHECKPOINT_PREFIXES[component])}); it holds "
            f"{', '.join(name.replace('_', ' ') for name in present) or 'no known component'}"
        )
    return [
        ComponentWeights(part, f"{path} [{prefix}*]", stored, source if stored is not None else None)
        for prefix, part in parts
    ]


def is_checkpoint(state: dict[str, torch.Tensor]) -> bool:
    """Whether the keys carry ComfyUI's single-file checkpoint prefixes."""
    prefixes = tuple(prefix for group in CHECKPOINT_PREFIXES.values() for prefix in group)
    return any(key.startswith(prefixes) for key in state)


def checkpoint_parts(state: dict[str, torch.Tensor], component: Component) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """(prefix, weights) groups of `component` in a ComfyUI single-file checkpoint."""
    parts = []
    for prefix in CHECKPOINT_PREFIXES[component]:
        if prefix == "text_encoders.":
            names = sorted({key[len(prefix):].split(".", 1)[0] for key in state if key.startswith(prefix)})
            parts.extend((f"{prefix}{name}.", with_prefix(state, f"{prefix}{name}.")) for name in names)
        elif any(key.startswith(prefix) for key in state):
            parts.append((prefix, with_prefix(state, prefix)))
    return parts


def _metadata_config(path: Path, component: Component, *, whole: bool) -> dict[str, Any] | None:
    """The component's section of the file's metadata "config"; the whole object for a lone file."""
    text = read_metadata(path).get("config")
    if text is None:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ModelFileError(f"{path}: the metadata \"config\" is not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: the metadata \"config\" is not a JSON object")
    for name in FOLDER_NAMES[component]:
        if isinstance(config.get(name), dict):
            return config[name]
    sections = {name for names in FOLDER_NAMES.values() for name in names}
    return config if whole and not sections & set(config) else None
