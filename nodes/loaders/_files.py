"""Resolving model names under models/ for the loader nodes, their cache fingerprints, and the
model references (modeling/model_refs.py) the loaders output.

Every name goes through `Folders.resolve_model` (the one containment rule), so a workflow
cannot make a loader read outside its model folder. A missing model's error, at validation and
at run time, names the models/ subfolder the file belongs in. The fingerprint is the size and
modification time of every file behind the name: cheap enough to compute on every prompt,
and a replaced checkpoint (or a file inside a diffusers-layout folder) invalidates the
cached model. This module declares no nodes.
"""

from __future__ import annotations

from pathlib import Path

from engine.node_api import NodeContext, UnsafePathError
from modeling.files import weights_fingerprint
from modeling.families import Component
from modeling.model_refs import ModelRef
from modeling.reference_loading import reference

# How many of a folder's models a "not found" message names.
_LISTED_MAX = 8


def resolve_model_file(ctx: NodeContext, node: str, input_name: str, folder: str, name: object) -> Path:
    """The real path of model `name` in models/<folder>, or an error naming node and input."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{node}: {input_name} must be a file name from models/{folder}, got {name!r}")
    try:
        path = ctx.folders.resolve_model(folder, name)
    except UnsafePathError as error:
        raise ValueError(f"{node}: {input_name} {name!r} is not a valid name inside models/{folder}: {error}") from None
    if not path.exists():
        where = model_folder_label(ctx, folder)
        raise FileNotFoundError(
            f"{node}: {input_name} {name!r} was not found in {where}: put the model there "
            f"(a .safetensors file or a diffusers folder) and queue again"
        )
    return path


def model_folder_label(ctx: NodeContext, folder: str) -> str:
    """ "models/vae/": where a user puts a model of this kind, named relative to the models
    folder (error messages never show absolute server paths). Legacy names ("unet") map to the
    folder they stand for."""
    return f"models/{ctx.folders.model_folder(folder).name}/"


def validate_model_name(ctx: NodeContext, folder: str, name: object) -> bool | str:
    """A loader's `validate` hook: True when `name` is a model listed in models/<folder>,
    else a message that says which folder the file belongs in and what that folder holds.

    It replaces the generic "Value not in list" check, which lists the choices but never says
    where a missing file should go.
    """
    if name is None:  # a linked input: its value only exists when the graph runs
        return True
    listed = ctx.folders.list_models(folder)
    if isinstance(name, str) and name in listed:
        return True
    where = model_folder_label(ctx, folder)
    holds = f"it has {', '.join(repr(item) for item in listed[:_LISTED_MAX])}" if listed else "it is empty"
    if len(listed) > _LISTED_MAX:
        holds += f" and {len(listed) - _LISTED_MAX} more"
    return (f"{name!r} is not in {where}: put the model file (.safetensors, or a diffusers folder) in "
            f"{where} and queue again ({holds})")


def model_fingerprint(ctx: NodeContext, folder: str, name: object) -> str | float:
    """Sizes and mtimes of the files behind `name`; NaN (never cached) when it cannot be resolved."""
    if not isinstance(name, str):
        return float("nan")
    try:
        path = ctx.folders.resolve_model(folder, name)
    except UnsafePathError:
        return float("nan")
    fingerprint = weights_fingerprint(path)
    return float("nan") if fingerprint is None else fingerprint  # missing: the node itself reports the error


def model_reference(ctx: NodeContext, node: str, input_name: str, folder: str, name: object, component: Component,
                    *, variant: str = "", compute: str = "default", storage: str = "default") -> ModelRef:
    """A checked reference to `component` of model `name` in models/<folder> (the file is checked, not
    loaded: the model manager loads it on first use)."""
    path = resolve_model_file(ctx, node, input_name, folder, name)
    fingerprint = model_fingerprint(ctx, folder, name)
    return reference(path, component, fingerprint=str(fingerprint), label=str(name), variant=variant,
                     compute=compute, storage=storage)
