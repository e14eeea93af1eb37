"""Loading every layout offline: model folder, ComfyUI single file, loose files; and the errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modeling.conditioning import FluxConditioning
from modeling.detect import UnknownCheckpointError
from modeling.diffusion_model import DiffusionModel
from modeling.errors import ModelFileError
from modeling.families import FAMILIES
from modeling.loading import (
    load_checkpoint,
    load_diffusion_model,
    load_state_dict,
    load_text_encoder,
    load_vae,
    read_model_settings,
)
from modeling.text_encoder import TextEncoder
from modeling.vae import Vae
from tests.fixtures import tiny_models
from tests.unit.modeling.conftest import TinyLayouts

CPU = torch.device("cpu")


def _outputs(model: DiffusionModel, text_encoder: TextEncoder, vae: Vae) -> tuple[torch.Tensor, ...]:
    """One pass through all three components on fixed inputs."""
    hidden, pooled = text_encoder.encode("a red circle")
    latent = torch.randn(1, 16, 4, 4, generator=torch.Generator().manual_seed(0))
    return hidden, pooled, model.velocity(latent, torch.tensor([0.5]), FluxConditioning(hidden, pooled)), vae.decode(latent)


def test_model_folder_loads_with_its_settings(tiny: TinyLayouts) -> None:
    model, text_encoder, vae = load_checkpoint(tiny.folder, device="cpu")
    assert model.family.name == "flux" and model.latent_channels == 16 and model.device == CPU
    assert model.sampling.shift == tiny_models.SHIFT  # flowmill.json overrides the family default
    assert model.sampling.timesteps == FAMILIES["flux"].sampling.timesteps  # type: ignore[union-attr]
    assert (vae.shift, vae.scale, vae.latent_channels, vae.downscale) == (0.25, 1.5, 16, 8)
    assert text_encoder.max_length == tiny_models.TOKENIZER_MAX_LENGTH
    assert read_model_settings(tiny.folder)["recommended"]["steps"] == 20
    assert model.latent_preview is None and vae.latent_preview is None


def test_all_layouts_give_identical_models(tiny: TinyLayouts) -> None:
    from_folder = _outputs(*load_checkpoint(tiny.folder, device="cpu"))
    from_single_file = _outputs(*load_checkpoint(tiny.single_file, device="cpu"))
    loose = (load_diffusion_model(tiny.loose.diffusion_model, device="cpu"),
             load_text_encoder(tiny.loose.text_encoder, device="cpu"),
             load_vae(tiny.loose.vae, device="cpu"))
    from_loose_files = _outputs(*loose)
    for first, second, third in zip(from_folder, from_single_file, from_loose_files, strict=True):
        assert torch.equal(first, second) and torch.equal(first, third)


def test_components_load_from_a_model_folder_and_a_single_file(tiny: TinyLayouts) -> None:
    for path in (tiny.folder, tiny.single_file):
        assert load_vae(path, device="cpu").latent_channels == 16
        assert load_diffusion_model(path, device="cpu").family.name == "flux"
        assert load_text_encoder(path, device="cpu").encode("")[0].shape == (1, 16, 64)
    # A lone diffusion model has no flowmill.json: the family's default shift.
    assert load_diffusion_model(tiny.loose.diffusion_model, device="cpu").sampling == FAMILIES["flux"].sampling


def test_the_clip_encoder_is_picked_among_several(tiny: TinyLayouts, tmp_path: Path) -> None:
    state = load_state_dict(tiny.single_file)
    state["text_encoders.t5xxl.encoder.block.0.layer.0.weight"] = torch.zeros(2, 2)
    path = tmp_path / "two-encoders.safetensors"
    save_file(state, str(path))
    shutil.copytree(tiny.single_file.with_name("tiny-single.tokenizer"), tmp_path / "two-encoders.tokenizer")
    assert load_text_encoder(path, device="cpu").family.name == "clip_text"
    del state["text_encoders.clip_l.transformer.text_model.final_layer_norm.weight"]
    save_file(state, str(path))
    with pytest.raises(ModelFileError, match="no clip text encoder here .*clip_l.*missing 'final_layer_norm.*t5xxl"):
        load_text_encoder(path, device="cpu")


def test_latent_preview_json_is_read_and_copied_to_the_model(tiny: TinyLayouts, tmp_path: Path) -> None:
    folder = shutil.copytree(tiny.folder, tmp_path / "with-preview")
    preview = {"factors": [[0.1, 0.2, 0.3]] * 16, "bias": [0.5, 0.5, 0.5]}
    (folder / "vae" / "latent_preview.json").write_text(json.dumps(preview))
    model, _, vae = load_checkpoint(folder, device="cpu")
    assert vae.latent_preview is not None and model.latent_preview is vae.latent_preview
    assert vae.latent_preview.factors.shape == (16, 3)


def test_explicit_dtype_is_used(tiny: TinyLayouts) -> None:
    model = load_diffusion_model(tiny.loose.diffusion_model, device="cpu", dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16 and next(model.module.parameters()).dtype == torch.bfloat16
    latent = torch.randn(1, 16, 4, 4)
    velocity = model.velocity(latent, torch.tensor([0.5]), FluxConditioning(torch.randn(1, 3, 64), torch.randn(1, 64)))
    assert velocity.dtype == torch.float32  # results come back in the caller's dtype


@pytest.mark.parametrize("name", ["model.ckpt", "model.pt", "model.bin", "model.pth", "model"])
def test_pickle_and_unknown_formats_are_refused_by_name(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\x80\x04anything")
    with pytest.raises(ModelFileError, match="only safetensors files") as caught:
        load_state_dict(path)
    assert str(path) in str(caught.value)
    with pytest.raises(ModelFileError, match=str(path)):
        load_vae(path, device="cpu")


def test_a_folder_with_only_pickle_weights_is_refused(tmp_path: Path) -> None:
    (tmp_path / "diffusion_pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ModelFileError, match="pickle formats are never loaded"):
        load_vae(tmp_path, device="cpu")


def test_a_corrupt_safetensors_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"not a header")
    with pytest.raises(ModelFileError, match=f"{path}: not a readable safetensors file"):
        load_state_dict(path)


def test_unknown_checkpoint_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mystery.safetensors"
    save_file({"backbone.stem.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(UnknownCheckpointError, match=f"{path}: this diffusion model is not a checkpoint") as caught:
        load_diffusion_model(path, device="cpu")
    assert "backbone.stem (1 keys)" in str(caught.value)


def test_a_missing_component_is_named(tiny: TinyLayouts, tmp_path: Path) -> None:
    folder = shutil.copytree(tiny.folder, tmp_path / "no-vae")
    shutil.rmtree(folder / "vae")
    with pytest.raises(ModelFileError, match="this model folder has no vae"):
        load_checkpoint(folder, device="cpu")
    partial = tmp_path / "partial.safetensors"
    state = {key: value for key, value in load_state_dict(tiny.single_file).items() if not key.startswith("vae.")}
    save_file(state, str(partial))
    with pytest.raises(ModelFileError, match=f"{partial}: this checkpoint has no vae .* holds diffusion model, text"):
        load_checkpoint(partial, device="cpu")


def test_a_lone_component_is_not_a_checkpoint(tiny: TinyLayouts) -> None:
    with pytest.raises(ModelFileError, match="not a single-file checkpoint"):
        load_checkpoint(tiny.loose.vae, device="cpu")
    with pytest.raises(ModelFileError, match="needs a model_index.json"):
        load_checkpoint(tiny.folder / "vae", device="cpu")


def test_a_shape_mismatch_names_the_file_and_the_weight(tiny: TinyLayouts, tmp_path: Path) -> None:
    state = load_state_dict(tiny.loose.diffusion_model)
    state["transformer_blocks.0.attn.to_q.weight"] = torch.zeros(32, 16)
    state.pop("norm_out.linear.bias")
    path = tmp_path / "bad.safetensors"
    save_file(state, str(path))
    with pytest.raises(ModelFileError) as caught:
        load_diffusion_model(path, device="cpu")
    message = str(caught.value)
    assert message.startswith(f"{path}: the weights do not fit the flux diffusion model")
    assert "missing: norm_out.linear.bias" in message
    assert "shape mismatch: transformer_blocks.0.attn.to_q.weight stored (32, 16), model (32, 32)" in message


def test_a_config_json_from_other_weights_is_caught(tiny: TinyLayouts, tmp_path: Path) -> None:
    folder = shutil.copytree(tiny.folder / "vae", tmp_path / "vae")
    config = json.loads((folder / "config.json").read_text())
    config["latent_channels"] = 4
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFileError, match="says latent_channels = 4 but the weights in .* have 16"):
        load_vae(folder, device="cpu")


def test_settings_shapes_cannot_show_are_asked_for(tiny: TinyLayouts, tmp_path: Path) -> None:
    path = tmp_path / "vae.safetensors"
    shutil.copy(tiny.loose.vae, path)  # without its config.json the default of 32 norm groups cannot work
    with pytest.raises(ModelFileError, match="norm_num_groups.*config.json beside them"):
        load_vae(path, device="cpu")


def test_a_text_encoder_without_tokenizer_says_where_it_looked(tiny: TinyLayouts, tmp_path: Path) -> None:
    path = tmp_path / "clip.safetensors"
    shutil.copy(tiny.loose.text_encoder, path)
    with pytest.raises(ModelFileError, match="no tokenizer found .*/clip.tokenizer or "):
        load_text_encoder(path, device="cpu")
    with pytest.raises(ValueError, match="unknown text encoder kind 't5'"):
        load_text_encoder(tiny.loose.text_encoder, device="cpu", kind="t5")


def test_bad_sampling_settings_name_flowmill_json(tiny: TinyLayouts, tmp_path: Path) -> None:
    folder = shutil.copytree(tiny.folder, tmp_path / "bad-settings")
    (folder / "flowmill.json").write_text(json.dumps({"sampling": {"shift": -1}}))
    with pytest.raises(ModelFileError, match="flowmill.json: bad \"sampling\" settings"):
        load_diffusion_model(folder, device="cpu")
