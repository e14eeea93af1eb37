"""LoraLoader and LoraLoaderModelOnly in whole text-to-image graphs on the tiny checkpoint.

The LoRAs are random, written into a models/ folder copied from the session's tiny models with a
loras/ subfolder added (tests/fixtures/tiny_loras.py). Graphs run through validate_prompt and the
executor with the real model manager (tests/fixtures/pipeline.py), as the worker runs them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from engine.events import ExecutionFailed
from engine.paths import Folders
from engine.registry import NodeRegistry
from modeling.lora import LoraPatch
from modeling.model_refs import ModelRef
from tests.fixtures import tiny_loras
from tests.fixtures.pipeline import Pipeline, scratch_folders
from tests.fixtures.tiny_loras import bfl_shapes, clip_layer_names, clip_shapes, flux_layer_names
from tests.fixtures.tiny_models import build_clip, build_flux
from tests.nodes.generation.conftest import SINGLE_CHECKPOINT, Nodes

STYLE_A = "style-a.safetensors"  # kohya, transformer and text encoder
STYLE_B = "style-b.safetensors"  # PEFT, transformer only
CLIP_ONLY = "clip-only.safetensors"
FOR_SD = "sd15-style.safetensors"  # a LoRA for another model


@pytest.fixture(scope="module")
def models_with_loras(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lora-models") / "models"
    shutil.copytree(tiny_models_dir, root)
    flux, clip = build_flux(), build_clip()
    transformer = tiny_loras.random_lora(bfl_shapes(flux), flux_layer_names(flux), seed=21, alpha=2.0, magnitude=0.4)
    text = tiny_loras.random_lora(clip_shapes(clip), clip_layer_names(clip), seed=22, alpha=4.0, magnitude=0.4)
    loras = root / "loras"
    tiny_loras.save(loras / STYLE_A, tiny_loras.kohya(transformer) | tiny_loras.kohya(text, "lora_te_"))
    shapes = {name.removesuffix(".weight"): tuple(value.shape) for name, value in flux.state_dict().items()
              if value.dim() == 2}
    tiny_loras.save(loras / STYLE_B, tiny_loras.peft(tiny_loras.random_lora(shapes, shapes, seed=23, magnitude=0.4)))
    tiny_loras.save(loras / CLIP_ONLY, tiny_loras.peft(text, "text_encoder."))
    tiny_loras.save(loras / FOR_SD, {
        f"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.{part}": torch.zeros(4, 4)
        for part in ("lora_down.weight", "lora_up.weight")})
    return root


@pytest.fixture
def lora_folders(tmp_path: Path, models_with_loras: Path) -> Folders:
    return scratch_folders(models_with_loras, tmp_path)


@pytest.fixture
def fresh(registry: NodeRegistry, lora_folders: Folders):
    """A new pipeline (own executor, cache and model manager) per call: what a prompt gives alone."""
    return lambda: Pipeline(registry, lora_folders)


def text_to_image(lora: tuple[str, ...] | None = None, *, seed: int = 5) -> dict:
    """The tiny checkpoint's text-to-image graph; `lora` puts a LoraLoader (name, strength_model,
    strength_clip) or a LoraLoaderModelOnly (name, strength_model) between the loader and its users."""
    graph: dict = {"ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SINGLE_CHECKPOINT}}}
    model, clip = ["ckpt", 0], ["ckpt", 1]
    if lora is not None and len(lora) == 3:
        graph["lora"] = {"class_type": "LoraLoader", "inputs": {
            "model": model, "clip": clip, "lora_name": lora[0], "strength_model": lora[1], "strength_clip": lora[2]}}
        model, clip = ["lora", 0], ["lora", 1]
    elif lora is not None:
        graph["lora"] = {"class_type": "LoraLoaderModelOnly", "inputs": {
            "model": model, "lora_name": lora[0], "strength_model": lora[1]}}
        model = ["lora", 0]
    return graph | {
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red circle on a blue background", "clip": clip}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": clip}},
        "empty": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 48, "batch_size": 1}},
        "sample": {"class_type": "KSampler", "inputs": {
            "model": model, "seed": seed, "steps": 3, "cfg": 3.0, "sampler_name": "euler", "scheduler": "simple",
            "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": ["empty", 0], "denoise": 1.0}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["ckpt", 2]}},
        "preview": {"class_type": "PreviewImage", "inputs": {"images": ["decode", 0]}},
    }


def image(pipeline: Pipeline, lora: tuple[str, ...] | None = None) -> torch.Tensor:
    result = pipeline.run(text_to_image(lora)).value("decode")
    assert torch.isfinite(result).all()
    return result


def test_a_lora_changes_the_image_and_strength_zero_is_bit_identical_to_no_lora(fresh) -> None:
    plain = image(fresh())
    assert torch.equal(image(fresh(), (STYLE_A, 0.0, 0.0)), plain)
    changed = image(fresh(), (STYLE_A, 1.0, 1.0))
    assert (changed - plain).abs().max() > 1e-3
    only_text = image(fresh(), (STYLE_A, 0.0, 1.0))  # each strength reaches its own model
    assert (only_text - plain).abs().max() > 1e-3 and (only_text - changed).abs().max() > 1e-3


def test_prompts_with_different_loras_back_to_back_give_what_each_gives_alone(fresh) -> None:
    prompts = [(STYLE_A, 1.0, 1.0), (STYLE_B, 0.8, 1.0), None, (STYLE_A, -0.5, 0.5)]
    alone = [image(fresh(), lora) for lora in prompts]
    shared = fresh()  # one executor and model manager: the base model stays resident across prompts
    for lora, expected in zip(prompts, alone, strict=True):
        assert torch.equal(image(shared, lora), expected), lora
    assert len({tuple(result.flatten()[:64].tolist()) for result in alone}) == len(prompts)
    assert shared.executor.models.loads == 3  # diffusion model, text encoder, VAE: each read once


def test_lora_loader_model_only_is_lora_loader_without_the_clip(fresh) -> None:
    model_only = image(fresh(), (STYLE_A, 0.7))
    assert torch.equal(model_only, image(fresh(), (STYLE_A, 0.7, 0.0)))
    assert (model_only - image(fresh())).abs().max() > 1e-3


def test_a_lora_for_another_model_fails_at_the_lora_loader(fresh) -> None:
    outcome = fresh().run(text_to_image((FOR_SD, 1.0, 1.0)), expect="error")
    failure = outcome.result.failure
    assert isinstance(failure, ExecutionFailed) and failure.node_id == "lora" and failure.node_type == "LoraLoader"
    message = failure.exception_message
    assert message.startswith(f"LoraLoader: lora_name {FOR_SD!r}: ")
    assert "recognised as kohya" in message and "lora_unet_down_blocks_0_attentions_0" in message
    assert "lora_unet_transformer_blocks_0_" in message  # what the FLUX model's layers are called
    assert str(fresh().folders.models_dir) not in message  # no server paths in messages


def test_a_text_encoder_lora_patches_only_the_clip_and_fails_on_a_model_alone(fresh) -> None:
    assert (image(fresh(), (CLIP_ONLY, 1.0, 1.0)) - image(fresh())).abs().max() > 1e-3
    outcome = fresh().run(text_to_image((CLIP_ONLY, 1.0)), expect="error")
    assert outcome.result.failure.node_type == "LoraLoaderModelOnly"
    assert "no weight of this LoRA fits the diffusion model" in outcome.result.failure.exception_message


def test_the_loader_outputs_patched_references_and_touches_no_module(registry: NodeRegistry,
                                                                      lora_folders: Folders) -> None:
    nodes = Nodes(registry, lora_folders)
    model, clip, _ = nodes.run("CheckpointLoaderSimple", ckpt_name=SINGLE_CHECKPOINT)
    with nodes.models.use(model) as loaded:
        before = {name: (parameter.data, parameter.detach().clone())
                  for name, parameter in loaded.module.named_parameters()}
    patched_model, patched_clip = nodes.run("LoraLoader", model=model, clip=clip, lora_name=STYLE_A,
                                            strength_model=0.5, strength_clip=1.5)
    assert isinstance(patched_model, ModelRef) and patched_model.weights_key == model.weights_key
    (patch,) = patched_model.patches
    assert isinstance(patch, LoraPatch) and patch.strength == 0.5 and patch.component == "diffusion_model"
    assert patched_clip.patches[0].strength == 1.5 and patched_clip.patches[0].component == "text_encoder"
    with nodes.models.use(model) as loaded:
        for name, parameter in loaded.module.named_parameters():
            assert parameter.data_ptr() == before[name][0].data_ptr() and torch.equal(parameter, before[name][1])
    # A model-only LoRA leaves the CLIP reference as it came; strength 0 leaves both.
    same_model, same_clip = nodes.run("LoraLoader", model=model, clip=clip, lora_name=STYLE_B, strength_model=0.0,
                                      strength_clip=1.0)
    assert same_model == model and same_clip == clip
    assert nodes.fingerprint("LoraLoader", lora_name=STYLE_A) != nodes.fingerprint("LoraLoader", lora_name=STYLE_B)


def test_a_missing_lora_name_is_refused_at_validation_naming_models_loras(fresh) -> None:
    checked = fresh().validate(text_to_image(("nope.safetensors", 1.0, 1.0)))
    assert not checked.ok
    assert "models/loras/" in str(checked.node_errors["lora"])
