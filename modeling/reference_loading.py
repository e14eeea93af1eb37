"""Model references from files (`reference`, for the loader nodes) and back to modules
(`load_reference`, the model manager's `Loader`).

`reference` checks what can be checked without reading weights (the header's keys and shapes, the
config, the tokenizer), so a wrong file fails at its loader node, not at the first node that uses it.

Weights are built on the CPU (memory-mapped safetensors, no second copy when the stored precision
is the one computed in) in the dtype they compute in on the compute device, so placing them on a
GPU is one copy per tensor. A diffusion model from a checkpoint carries its VAE's latent preview,
as `load_checkpoint` gives it, so samplers preview without the VAE.
"""

from __future__ import annotations

from pathlib import Path

import torch

from modeling.components import CHECKPOINT_PREFIXES, FOLDER_NAMES
from modeling.diffusion_model import DiffusionModel
from modeling.families import Component
from modeling.files import is_model_folder, read_metadata
from modeling.latent_preview import PREVIEW_FILE, LatentPreview
from modeling.loading import check_component, load_diffusion_model, load_text_encoder, load_vae
from modeling.model_refs import ModelRef, WeightsSource
from modeling.storage import storage_named
from modeling.text_encoder import TextEncoder
from modeling.vae import Vae

HOST = torch.device("cpu")


def reference(path: Path, component: Component, *, fingerprint: str, label: str, variant: str = "",
              compute: str = "default", storage: str = "default") -> ModelRef:
    """A checked reference to `component` at `path` (see the module docstring); `variant` is the text
    encoder kind for text encoders, `storage` how a diffusion model's weights are held in memory
    (a name in modeling/storage.py STORAGES)."""
    storage_named(storage)
    if storage != "default" and component != "diffusion_model":
        raise ValueError(f"weight storage {storage!r} applies to diffusion models, "
                         f"not to a {component.replace('_', ' ')}")
    family = check_component(path, component, kind=variant or "clip")
    return ModelRef(WeightsSource(str(path), fingerprint), component, family=family.name, storage=storage,
                    variant=variant, compute=compute, label=label)


def load_reference(ref: ModelRef, compute_device: torch.device) -> DiffusionModel | TextEncoder | Vae:
    """The model `ref` names, on the CPU, in the precision it computes in on `compute_device` (on the
    CPU when the reference asks to compute there)."""
    if ref.compute == "cpu":
        compute_device = HOST
    path = Path(ref.source.path)
    if ref.component == "diffusion_model":
        model = load_diffusion_model(path, device=HOST, compute_device=compute_device, storage=ref.storage)
        return model.with_latent_preview(_checkpoint_preview(path, model.latent_channels))
    if ref.component == "vae":
        return load_vae(path, device=HOST, compute_device=compute_device)
    return load_text_encoder(path, device=HOST, kind=ref.variant or "clip", compute_device=compute_device)


def _checkpoint_preview(path: Path, channels: int) -> LatentPreview | None:
    """The latent preview of the VAE packed with a diffusion model in one checkpoint, if any."""
    if is_model_folder(path):
        files = [path / name / PREVIEW_FILE for name in FOLDER_NAMES["vae"]]
    elif path.is_file() and _has_vae_keys(path):
        files = [path.with_name(f"{path.stem}.{PREVIEW_FILE}")]
    else:
        return None
    found = next((file for file in files if file.is_file()), None)
    if found is None:
        return None
    preview = LatentPreview.load(found)
    return preview if preview.channels == channels else None


def _has_vae_keys(path: Path) -> bool:
    from safetensors import safe_open

    read_metadata(path)  # a readable safetensors file, or a ModelFileError naming it
    with safe_open(str(path), framework="pt", device="cpu") as file:
        return any(key.startswith(CHECKPOINT_PREFIXES["vae"]) for key in file.keys())
