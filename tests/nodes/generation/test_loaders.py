"""Loader nodes on tiny random-weight models written to a models/ folder."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pytest
import torch

from engine.paths import Folders
from modeling.diffusion_model import DiffusionModel
from modeling.text_encoder import TextEncoder
from modeling.vae import Vae
from tests.fixtures.tiny_models import SHIFT
from tests.nodes.generation.conftest import (
    FOLDER_CHECKPOINT,
    SINGLE_CHECKPOINT,
    TEXT_ENCODER,
    UNET,
    VAE,
    Nodes,
    empty,
)


@pytest.mark.parametrize("name", [FOLDER_CHECKPOINT, SINGLE_CHECKPOINT])
def test_checkpoint_loader_returns_the_three_components(nodes: Nodes, name: str) -> None:
    references = nodes.run("CheckpointLoaderSimple", ckpt_name=name)
    assert [ref.component for ref in references] == ["diffusion_model", "text_encoder", "vae"]
    assert [ref.family for ref in references] == ["flux", "clip_text", "autoencoder_kl"]
    assert nodes.models.loads == 0  # references only: the model manager loads on first use
    model_ref, clip_ref, vae_ref = references
    with nodes.models.use(model_ref) as model, nodes.models.use(clip_ref) as clip, nodes.models.use(vae_ref) as vae:
        assert isinstance(model, DiffusionModel) and isinstance(clip, TextEncoder) and isinstance(vae, Vae)
        assert model.latent_channels == vae.latent_channels == 16
        assert model.device == torch.device("cpu")


def test_folder_checkpoint_applies_its_sampling_settings(nodes: Nodes) -> None:
    reference, _, _ = nodes.run("CheckpointLoaderSimple", ckpt_name=FOLDER_CHECKPOINT)
    with nodes.models.use(reference) as model:
        assert model.sampling.shift == pytest.approx(SHIFT)


def test_component_loaders(nodes: Nodes) -> None:
    model_ref = nodes.one("UNETLoader", unet_name=UNET, weight_dtype="default")
    vae_ref = nodes.one("VAELoader", vae_name=VAE)
    clip_ref = nodes.one("CLIPLoader", clip_name=TEXT_ENCODER, type="stable_diffusion")
    with nodes.models.use(model_ref) as model, nodes.models.use(vae_ref) as vae, nodes.models.use(clip_ref) as clip:
        assert isinstance(model, DiffusionModel) and model.latent_preview is None
        assert isinstance(vae, Vae) and vae.latent_channels == 16
        assert isinstance(clip, TextEncoder)
    on_cpu = nodes.one("CLIPLoader", clip_name=TEXT_ENCODER, type="sd3", device="cpu")
    assert on_cpu.compute == "cpu" and on_cpu.weights_key != clip_ref.weights_key
    with nodes.models.use(on_cpu) as encoder:
        assert encoder.device == torch.device("cpu")


def test_component_loaders_match_the_checkpoint(nodes: Nodes) -> None:
    """The same weights load to the same encoder, whichever file layout they come in."""
    _, clip_from_checkpoint, _ = nodes.run("CheckpointLoaderSimple", ckpt_name=SINGLE_CHECKPOINT)
    clip = nodes.one("CLIPLoader", clip_name=TEXT_ENCODER, type="stable_diffusion")
    expected = nodes.one("CLIPTextEncode", text="a red circle", clip=clip_from_checkpoint)
    encoded = nodes.one("CLIPTextEncode", text="a red circle", clip=clip)
    assert torch.equal(encoded[0][0], expected[0][0])


@pytest.mark.parametrize(
    ("node_id", "inputs", "folder"),
    [
        ("CheckpointLoaderSimple", {"ckpt_name": "missing.safetensors"}, "checkpoints"),
        ("UNETLoader", {"unet_name": "missing.safetensors", "weight_dtype": "default"}, "diffusion_models"),
        ("VAELoader", {"vae_name": "missing.safetensors"}, "vae"),
        ("CLIPLoader", {"clip_name": "missing.safetensors", "type": "stable_diffusion"}, "text_encoders"),
    ],
)
def test_missing_file_names_node_input_and_folder(nodes: Nodes, node_id: str, inputs: dict, folder: str) -> None:
    name = next(key for key in inputs if key.endswith("_name"))
    with pytest.raises(FileNotFoundError, match=rf"{node_id}: {name} 'missing.safetensors' was not found in "
                                                rf"models/{folder}"):
        nodes.run(node_id, **inputs)


def test_escaping_name_is_refused(nodes: Nodes) -> None:
    with pytest.raises(ValueError, match=r"CheckpointLoaderSimple: ckpt_name '\.\./secret' is not a valid name"):
        nodes.run("CheckpointLoaderSimple", ckpt_name="../secret")


def test_unsupported_options_are_errors(nodes: Nodes) -> None:
    with pytest.raises(ValueError, match=r"CLIPLoader: type 'wan' needs a text encoder architecture"):
        nodes.run("CLIPLoader", clip_name=TEXT_ENCODER, type="wan")


def test_a_file_of_the_wrong_kind_is_a_clear_error(nodes: Nodes) -> None:
    # A VAE file is no diffusion model: the loader says what it found.
    with pytest.raises(ValueError, match=r"autoencoder_kl|vae|diffusion"):
        nodes.run("UNETLoader", unet_name=f"../vae/{VAE}", weight_dtype="default")


def copied_models(folders: Folders, tmp_path: Path) -> Folders:
    root = tmp_path / "models_copy"
    shutil.copytree(folders.models_dir, root)
    return Folders(root, folders.input_dir, folders.output_dir, folders.temp_dir, folders.user_dir)


def test_fingerprint_follows_the_files(registry, folders: Folders, tmp_path: Path) -> None:
    copy = copied_models(folders, tmp_path)
    nodes = Nodes(registry, copy)
    single = nodes.fingerprint("CheckpointLoaderSimple", ckpt_name=SINGLE_CHECKPOINT)
    folder = nodes.fingerprint("CheckpointLoaderSimple", ckpt_name=FOLDER_CHECKPOINT)
    assert single == nodes.fingerprint("CheckpointLoaderSimple", ckpt_name=SINGLE_CHECKPOINT)
    inner = copy.models_dir / "checkpoints" / FOLDER_CHECKPOINT / "flowmill.json"
    os.utime(inner, ns=(inner.stat().st_atime_ns, inner.stat().st_mtime_ns + 10**9))
    assert nodes.fingerprint("CheckpointLoaderSimple", ckpt_name=FOLDER_CHECKPOINT) != folder
    (copy.models_dir / "vae" / VAE).write_bytes(b"changed")
    assert nodes.fingerprint("VAELoader", vae_name=VAE) != Nodes(registry, folders).fingerprint("VAELoader",
                                                                                               vae_name=VAE)
    assert math.isnan(nodes.fingerprint("UNETLoader", unet_name="missing.safetensors"))
    assert math.isnan(nodes.fingerprint("CLIPLoader", clip_name="../../etc/passwd"))


def _sample_image(nodes: Nodes, model_ref) -> torch.Tensor:
    clip = nodes.one("CLIPLoader", clip_name=TEXT_ENCODER, type="stable_diffusion")
    positive = nodes.one("CLIPTextEncode", text="a red circle", clip=clip)
    negative = nodes.one("CLIPTextEncode", text="", clip=clip)
    latent = nodes.one("KSampler", model=model_ref, seed=3, steps=2, cfg=2.0, sampler_name="euler",
                       scheduler="simple", positive=positive, negative=negative, latent_image=empty(nodes),
                       denoise=1.0)
    return nodes.one("VAEDecode", samples=latent, vae=nodes.one("VAELoader", vae_name=VAE))


def test_unet_loader_fp8_weights_feed_ksampler(nodes: Nodes) -> None:
    """weight_dtype fp8_e4m3fn holds the transformer's linear weights in 1 byte and still samples an image."""
    fp8 = nodes.one("UNETLoader", unet_name=UNET, weight_dtype="fp8_e4m3fn")
    assert fp8.storage == "fp8_e4m3fn"
    fast = nodes.one("UNETLoader", unet_name=UNET, weight_dtype="fp8_e4m3fn_fast")
    assert fast.weights_key == fp8.weights_key  # the same bytes: one resident module
    e5m2 = nodes.one("UNETLoader", unet_name=UNET, weight_dtype="fp8_e5m2")
    default = nodes.one("UNETLoader", unet_name=UNET, weight_dtype="default")
    assert len({fp8.weights_key, e5m2.weights_key, default.weights_key}) == 3
    with nodes.models.use(fp8) as model:
        weights = model.module.state_dict()
        assert weights["transformer_blocks.0.attn.to_q.weight"].dtype == torch.float8_e4m3fn
        assert weights["proj_out.bias"].dtype == model.dtype == torch.float32
    image = _sample_image(nodes, fp8)
    assert image.shape == (1, 48, 64, 3) and torch.isfinite(image).all()
    full = _sample_image(nodes, default)
    assert not torch.equal(image, full)  # the rounded weights are really used
    assert (image - full).abs().max() < 0.15  # and stay close to full precision


def test_unet_loader_reads_bfl_flux_files_and_samples_the_same_image(registry, folders: Folders,
                                                                     tmp_path: Path) -> None:
    """A FLUX file in BFL's original keys (as flux1-dev.safetensors ships) gives the image its diffusers twin gives."""
    from safetensors.torch import load_file, save_file

    from modeling.architectures.flux_bfl import from_diffusers

    copy = copied_models(folders, tmp_path)
    diffusion_models = copy.models_dir / "diffusion_models"
    state = from_diffusers(load_file(str(diffusion_models / UNET)))
    assert "double_blocks.0.img_attn.qkv.weight" in state
    bfl_file = diffusion_models / "flux1-tiny.safetensors"
    save_file({key: value.contiguous() for key, value in state.items()}, str(bfl_file))
    nodes = Nodes(registry, copy)
    bfl = nodes.one("UNETLoader", unet_name="flux1-tiny.safetensors", weight_dtype="default")
    assert bfl.family == "flux_bfl"
    diffusers_layout = nodes.one("UNETLoader", unet_name=UNET, weight_dtype="default")
    assert torch.equal(_sample_image(nodes, bfl), _sample_image(nodes, diffusers_layout))
