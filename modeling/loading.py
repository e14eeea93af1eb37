"""Loading models from local files only: lone component files, diffusers-layout folders and
ComfyUI single-file checkpoints, into the `DiffusionModel`, `TextEncoder` and `Vae` wrappers.

Paths arrive already resolved inside models/ (engine/paths.py `resolve_model`). Family
defaults come from the table in modeling/families.py; a diffusers folder's
scheduler/scheduler_config.json sets a VP model's prediction (eps or v), its flowmill.json may
override the sampling settings, and a VAE's latent_preview.json gives the preview projection.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from modeling.components import ComponentWeights, in_file, locate
from modeling.detect import UnknownCheckpointError, detect_family
from modeling.diffusion_model import DiffusionModel
from modeling.errors import ModelFileError
from modeling.families import TEXT_ENCODER_KINDS, Component, ModelFamily
from modeling.files import SETTINGS_FILE, is_model_folder, load_state_dict, read_json, tokenizer_folder
from modeling.instantiate import default_dtype, instantiate, resolve_config
from modeling.latent_preview import PREVIEW_FILE, LatentPreview
from modeling.storage import WeightStorage, storage_named
from modeling.text_encoder import TextEncoder
from modeling.vae import Vae
from sampling.contract import NoiseSchedule
from sampling.discrete_vp import DiscreteVP

__all__ = [
    "check_component",
    "load_checkpoint",
    "load_diffusion_model",
    "load_state_dict",
    "load_text_encoder",
    "load_vae",
    "read_model_settings",
]

# A diffusers pipeline folder's scheduler settings, and its prediction types -> DiscreteVP's.
SCHEDULER_CONFIG = Path("scheduler") / "scheduler_config.json"
_PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v"}


def load_diffusion_model(
    path: Path | str, *, device: torch.device | str, dtype: torch.dtype | None = None,
    compute_device: torch.device | None = None, storage: str = "default",
) -> DiffusionModel:
    """A diffusion model from a file, a component folder, a model folder or a checkpoint file.

    Built on `device`; without a `dtype`, in the precision it computes in on `compute_device`
    (default: `device`), so the model manager can keep a host copy ready for the GPU. `storage`
    names how the weights are held (modeling/storage.py: "default", "fp8_e4m3fn", "fp8_e5m2").
    """
    path, device = Path(path), torch.device(device)
    held = storage_named(storage)
    weights = locate(path, "diffusion_model")[0]
    settings = read_model_settings(path) if is_model_folder(path) else {}
    compute = compute_device or device
    chosen = dtype if dtype is not None else held.compute_dtype(default_dtype(weights.state, compute), compute)
    return _diffusion_model(weights, settings, path, device, chosen, held)


def load_vae(path: Path | str, *, device: torch.device | str, dtype: torch.dtype | None = None,
             compute_device: torch.device | None = None) -> Vae:
    """A VAE from a file, a component folder, a model folder or a checkpoint file."""
    path, device = Path(path), torch.device(device)
    weights = locate(path, "vae")[0]
    return _vae(weights, path, device, dtype, compute_device)


def load_text_encoder(path: Path | str, *, device: torch.device | str, kind: str = "clip",
                      compute_device: torch.device | None = None) -> TextEncoder:
    """A text encoder of `kind` (see TEXT_ENCODER_KINDS) with its tokenizer, from local files."""
    path, device = Path(path), torch.device(device)
    return _text_encoder(locate(path, "text_encoder"), path, device, kind, compute_device or device)


def load_checkpoint(path: Path | str, *, device: torch.device | str) -> tuple[DiffusionModel, TextEncoder, Vae]:
    """All three components from a diffusers-layout model folder or a ComfyUI single-file checkpoint.

    The diffusion model carries the VAE's latent preview, so samplers can preview without the VAE.
    """
    path, device = Path(path), torch.device(device)
    if path.is_dir():
        if not is_model_folder(path):
            raise ModelFileError(f"{path}: a checkpoint folder needs a model_index.json (diffusers layout)")
        parts = {component: locate(path, component) for component in ("diffusion_model", "vae", "text_encoder")}
        settings = read_model_settings(path)
    else:
        state = load_state_dict(path)  # read once, split by ComfyUI's prefixes
        parts = {component: in_file(path, state, component) for component in ("diffusion_model", "vae", "text_encoder")}
        if any(weights.origin == str(path) for group in parts.values() for weights in group):
            raise ModelFileError(
                f"{path}: not a single-file checkpoint (no model.diffusion_model.*, vae.* and text_encoders.* "
                f"keys); load its parts with UNETLoader, VAELoader and CLIPLoader instead"
            )
        settings = {}
    vae = _vae(parts["vae"][0], path, device, None)
    model = _diffusion_model(parts["diffusion_model"][0], settings, path, device, None)
    text_encoder = _text_encoder(parts["text_encoder"], path, device, "clip", device)
    return model.with_latent_preview(vae.latent_preview), text_encoder, vae


def read_model_settings(folder: Path | str) -> dict[str, Any]:
    """A model folder's flowmill.json ({"family", "sampling": {...}, "recommended": {...}}), or {}."""
    file = Path(folder) / SETTINGS_FILE
    return read_json(file) if file.is_file() else {}


def _diffusion_model(
    weights: ComponentWeights, settings: dict[str, Any], path: Path, device: torch.device, dtype: torch.dtype | None,
    storage: WeightStorage | None = None,
) -> DiffusionModel:
    family, module, config, dtype = _load(weights, "diffusion_model", device, dtype, storage)
    if family.sampling is None or family.latent_channels is None:
        raise ModelFileError(f"{weights.origin}: family {family.name} lacks sampling defaults")
    sampling = _scheduler_prediction(family.sampling, path)
    overrides = settings.get("sampling", {})
    if overrides:
        try:
            sampling = dataclasses.replace(sampling, **overrides)
        except (TypeError, ValueError) as error:
            raise ModelFileError(f"{path / SETTINGS_FILE}: bad \"sampling\" settings {overrides!r}: {error}") from None
    # The compute dtype, not the first parameter's: that one may be held in fp8.
    return DiffusionModel(module, family, sampling, family.latent_channels(config), device, dtype)


def _scheduler_prediction(sampling: NoiseSchedule, path: Path) -> NoiseSchedule:
    """A discrete VP model's prediction as a diffusers folder's scheduler/scheduler_config.json states it
    (`prediction_type`: "epsilon", or "v_prediction" for SD2-768-v); the family's default otherwise. A
    flowmill.json "sampling" setting still overrides it."""
    file = path / SCHEDULER_CONFIG
    if not isinstance(sampling, DiscreteVP) or not is_model_folder(path) or not file.is_file():
        return sampling
    stated = read_json(file).get("prediction_type", "epsilon")
    if stated not in _PREDICTION_TYPES:
        raise ModelFileError(f"{file}: prediction_type {stated!r} is not supported for a discrete VP model; "
                             f"expected one of {', '.join(_PREDICTION_TYPES)}")
    return dataclasses.replace(sampling, prediction=_PREDICTION_TYPES[stated])


def _vae(weights: ComponentWeights, path: Path, device: torch.device, dtype: torch.dtype | None,
         compute_device: torch.device | None = None) -> Vae:
    family, module, config, dtype = _load(weights, "vae", device, dtype, compute_device=compute_device)
    channels = family.latent_channels(config) if family.latent_channels else int(config["latent_channels"])
    if weights.config is not None and "scaling_factor" in weights.config:
        shift, scale = float(config.get("shift_factor") or 0.0), float(config["scaling_factor"])
    else:
        default = family.latent_format(channels)
        if default is None:
            raise ModelFileError(
                f"{weights.origin}: no known latent normalisation for a {channels}-channel {family.name} VAE; "
                f"put its config.json (with shift_factor and scaling_factor) beside the weights"
            )
        shift, scale = default.shift, default.scale
    preview = _latent_preview(weights, path, channels)
    return Vae(module, shift, scale, channels, device, dtype, preview)


def _text_encoder(candidates: list[ComponentWeights], path: Path, device: torch.device, kind: str,
                  compute_device: torch.device) -> TextEncoder:
    weights, family = _chosen_text_encoder(candidates, path, kind)
    tokenizer = _tokenizer(tokenizer_folder(weights.folder or path))
    config = resolve_config(family, weights)
    _match_token_ids(config, tokenizer, weights)
    dtype = default_dtype(weights.state, compute_device)
    module = instantiate(family, config, weights, device=device, dtype=dtype)
    return TextEncoder(module, tokenizer, family, device, dtype)


def _chosen_text_encoder(candidates: list[ComponentWeights], path: Path,
                         kind: str) -> tuple[ComponentWeights, ModelFamily]:
    """The candidate that is a text encoder of `kind`: a checkpoint may hold several (clip_l, t5xxl)."""
    if kind not in TEXT_ENCODER_KINDS:
        raise ValueError(f"unknown text encoder kind {kind!r}; expected one of {sorted(TEXT_ENCODER_KINDS)}")
    wanted = TEXT_ENCODER_KINDS[kind]
    found: list[str] = []
    for weights in candidates:
        try:
            family = detect_family(weights.state, "text_encoder", source=weights.origin)
        except UnknownCheckpointError as error:
            if len(candidates) == 1:
                raise
            found.append(str(error))
            continue
        if family.name in wanted:
            return weights, family
        found.append(f"{weights.origin}: {family.name}")
    raise ModelFileError(f"{path}: no {kind} text encoder here (wanted {', '.join(wanted)}); found: "
                         + "; ".join(found))


def check_component(path: Path | str, component: Component, *, kind: str = "clip") -> ModelFamily:
    """The family of `component` at `path`, checked as far as the file's header and config go (no
    weights are read): unknown architectures, configs that belong to other weights, a missing
    tokenizer or missing checkpoint parts fail here, with the file named."""
    path = Path(path)
    candidates = locate(path, component)
    if component == "text_encoder":
        weights, family = _chosen_text_encoder(candidates, path, kind)
        tokenizer_folder(weights.folder or path)
    else:
        weights = candidates[0]
        family = detect_family(weights.state, component, source=weights.origin)
    resolve_config(family, weights)
    if component == "diffusion_model" and (family.sampling is None or family.latent_channels is None):
        raise ModelFileError(f"{weights.origin}: family {family.name} lacks sampling defaults")
    return family


def _load(
    weights: ComponentWeights, component: Component, device: torch.device, dtype: torch.dtype | None,
    storage: WeightStorage | None = None, compute_device: torch.device | None = None,
) -> tuple[ModelFamily, torch.nn.Module, dict[str, Any], torch.dtype]:
    """The detected family, the built module, its config and the dtype it computes in (`dtype`, else the
    one the stored precision computes in on `compute_device`, default `device`)."""
    family = detect_family(weights.state, component, source=weights.origin)
    config = resolve_config(family, weights)
    chosen = dtype if dtype is not None else default_dtype(weights.state, compute_device or device)
    return family, instantiate(family, config, weights, device=device, dtype=chosen, storage=storage), config, chosen


def _tokenizer(folder: Path) -> Any:
    from transformers import CLIPTokenizer

    try:
        return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, TypeError) as error:
        raise ModelFileError(f"{folder}: not a readable CLIP tokenizer ({error})") from None


def _match_token_ids(config: dict[str, Any], tokenizer: Any, weights: ComponentWeights) -> None:
    """Use the tokenizer's start/end ids, which the pooled output depends on.

    Without a config.json the ids are CLIP's defaults, which a smaller vocabulary does not have.
    A config.json that disagrees with the tokenizer is an error, except CLIP's old
    `eos_token_id = 2`, with which transformers pools at the highest token id instead.
    """
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    if weights.config is None or "eos_token_id" not in weights.config:
        config.update(ids)
        return
    stated = config.get("eos_token_id")
    if stated not in (2, ids["eos_token_id"]):
        raise ModelFileError(
            f"{weights.config_source} says eos_token_id = {stated} but the tokenizer's end token is "
            f"{ids['eos_token_id']}; the text encoder and tokenizer do not belong together"
        )


def _latent_preview(weights: ComponentWeights, path: Path, channels: int) -> LatentPreview | None:
    """latent_preview.json in the VAE's folder, or `name.latent_preview.json` beside a lone file."""
    if weights.folder is not None:
        file = weights.folder / PREVIEW_FILE
    else:
        file = path.with_name(f"{path.stem}.{PREVIEW_FILE}")
    if not file.is_file():
        return None
    preview = LatentPreview.load(file)
    if preview.channels != channels:
        raise ModelFileError(f"{file}: the preview maps {preview.channels} latent channels, the VAE has {channels}")
    return preview
