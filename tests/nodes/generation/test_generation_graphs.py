"""Whole generation graphs through validate_prompt and the executor, as the worker runs them."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image as PILImage

from engine.events import ExecutionFailed, NodePreview, NodeProgress
from engine.media import read_png_text
from engine.paths import Folders
from server.messages import encode_preview
from tests.fixtures.pipeline import Outcome, Pipeline
from tests.nodes.generation.conftest import (
    FOLDER_CHECKPOINT,
    SINGLE_CHECKPOINT,
    TEXT_ENCODER,
    UNET,
    VAE,
)

WIDTH, HEIGHT, STEPS = 64, 48, 3


def loaders(checkpoint: str = SINGLE_CHECKPOINT) -> dict:
    return {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red circle on a blue background",
                                                           "clip": ["ckpt", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["ckpt", 1]}},
    }


def ksampler(latent: list, *, seed: int = 5, denoise: float = 1.0, model: list | None = None) -> dict:
    return {"class_type": "KSampler", "inputs": {
        "model": model or ["ckpt", 0], "seed": seed, "steps": STEPS, "cfg": 3.0, "sampler_name": "euler",
        "scheduler": "simple", "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": latent,
        "denoise": denoise}}


def text_to_image(seed: int = 5, checkpoint: str = SINGLE_CHECKPOINT) -> dict:
    return loaders(checkpoint) | {
        "empty": {"class_type": "EmptySD3LatentImage", "inputs": {"width": WIDTH, "height": HEIGHT, "batch_size": 1}},
        "sample": ksampler(["empty", 0], seed=seed),
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["ckpt", 2]}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": "t2i"}},
    }


def split_form(latent_node: str = "EmptyLatentImage") -> dict:
    return loaders() | {
        "empty": {"class_type": latent_node, "inputs": {"width": WIDTH, "height": HEIGHT, "batch_size": 1}},
        "noise": {"class_type": "RandomNoise", "inputs": {"noise_seed": 5}},
        "guider": {"class_type": "CFGGuider", "inputs": {"model": ["ckpt", 0], "positive": ["pos", 0],
                                                         "negative": ["neg", 0], "cfg": 3.0}},
        "select": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "sigmas": {"class_type": "BasicScheduler", "inputs": {"model": ["ckpt", 0], "scheduler": "simple",
                                                              "steps": STEPS, "denoise": 1.0}},
        "custom": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["noise", 0], "guider": ["guider", 0], "sampler": ["select", 0], "sigmas": ["sigmas", 0],
            "latent_image": ["empty", 0]}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["custom", 0], "vae": ["ckpt", 2]}},
        "preview": {"class_type": "PreviewImage", "inputs": {"images": ["decode", 0]}},
    }


def finite_image(outcome: Outcome, node_id: str, height: int = HEIGHT, width: int = WIDTH) -> torch.Tensor:
    image = outcome.value(node_id)
    assert image.shape == (1, height, width, 3) and torch.isfinite(image).all()
    assert 0 <= image.min() and image.max() <= 1
    return image


@pytest.mark.parametrize("checkpoint", [SINGLE_CHECKPOINT, FOLDER_CHECKPOINT])
def test_text_to_image_writes_a_png(pipeline: Pipeline, folders: Folders, checkpoint: str) -> None:
    outcome = pipeline.run(text_to_image(checkpoint=checkpoint))
    finite_image(outcome, "decode")
    (entry,) = outcome.result.outputs["save"]["images"]
    path = folders.output_dir / entry["subfolder"] / entry["filename"]
    with PILImage.open(path) as saved:
        assert saved.size == (WIDTH, HEIGHT)
    assert json.loads(read_png_text(path)["prompt"])["sample"]["class_type"] == "KSampler"


def test_progress_every_step_and_paced_binary_previews(pipeline: Pipeline) -> None:
    outcome = pipeline.run(text_to_image())
    progress = [(event.value, event.max) for event in outcome.events
                if isinstance(event, NodeProgress) and event.node_id == "sample"]
    assert progress == [(step, STEPS) for step in range(1, STEPS + 1)]
    previews = [event for event in outcome.events if isinstance(event, NodePreview)]
    # Paced (at most 20 a second), but never fewer than the first and the last step's.
    assert 2 <= len(previews) <= STEPS and {event.node_id for event in previews} == {"sample"}
    for event in previews:
        assert isinstance(event.image, PILImage.Image) and event.image.size == (WIDTH, HEIGHT)
        assert encode_preview(event.image)[:2] == b"\xff\xd8"  # the JPEG the server sends as a binary frame


def test_split_form_equals_ksampler(pipeline: Pipeline) -> None:
    prompt = split_form() | {
        "sample": ksampler(["empty", 0]),
        "decode_k": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["ckpt", 2]}},
        "preview_k": {"class_type": "PreviewImage", "inputs": {"images": ["decode_k", 0]}},
    }
    outcome = pipeline.run(prompt)
    assert outcome.value("empty")["samples"].shape[1] == 4  # widened by both samplers
    assert torch.equal(outcome.value("custom")["samples"], outcome.value("sample")["samples"])
    assert torch.equal(finite_image(outcome, "decode"), finite_image(outcome, "decode_k"))
    assert outcome.value("custom", 1)["samples"].shape == (1, 16, HEIGHT // 8, WIDTH // 8)
    assert len(outcome.result.outputs["preview"]["images"]) == 1


def test_image_to_image(pipeline: Pipeline) -> None:
    prompt = loaders() | {
        "source": {"class_type": "EmptyImage", "inputs": {"width": WIDTH, "height": HEIGHT, "batch_size": 1,
                                                          "color": 0xCC2222}},
        "encode": {"class_type": "VAEEncode", "inputs": {"pixels": ["source", 0], "vae": ["ckpt", 2]}},
        "sample": ksampler(["encode", 0], denoise=0.5),
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["ckpt", 2]}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": "i2i"}},
    }
    outcome = pipeline.run(prompt)
    finite_image(outcome, "decode")
    encoded, sampled = outcome.value("encode")["samples"], outcome.value("sample")["samples"]
    full = pipeline.run(prompt | {"sample": ksampler(["encode", 0], denoise=1.0)}).value("sample")["samples"]
    # Half the schedule stays closer to the encoded image than a full denoise does.
    assert (sampled - encoded).norm() < (full - encoded).norm()


def test_component_loaders_and_model_sampling_in_a_graph(pipeline: Pipeline) -> None:
    prompt = {
        "unet": {"class_type": "UNETLoader", "inputs": {"unet_name": UNET, "weight_dtype": "default"}},
        "clip": {"class_type": "CLIPLoader", "inputs": {"clip_name": TEXT_ENCODER, "type": "stable_diffusion"}},
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": VAE}},
        "shift": {"class_type": "ModelSamplingFlux", "inputs": {"model": ["unet", 0], "max_shift": 1.15,
                                                               "base_shift": 0.5, "width": WIDTH, "height": HEIGHT}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red circle", "clip": ["clip", 0]}},
        "empty": {"class_type": "EmptyLatentImage", "inputs": {"width": WIDTH, "height": HEIGHT, "batch_size": 2}},
        "guider": {"class_type": "BasicGuider", "inputs": {"model": ["shift", 0], "conditioning": ["pos", 0]}},
        "noise": {"class_type": "RandomNoise", "inputs": {"noise_seed": 1}},
        "select": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "heun"}},
        "sigmas": {"class_type": "BasicScheduler", "inputs": {"model": ["shift", 0], "scheduler": "simple",
                                                              "steps": STEPS, "denoise": 1.0}},
        "custom": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["noise", 0], "guider": ["guider", 0], "sampler": ["select", 0], "sigmas": ["sigmas", 0],
            "latent_image": ["empty", 0]}},
        "upscale": {"class_type": "LatentUpscale", "inputs": {"samples": ["custom", 1], "upscale_method": "bislerp",
                                                              "width": 2 * WIDTH, "height": 2 * HEIGHT,
                                                              "crop": "disabled"}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["upscale", 0], "vae": ["vae", 0]}},
        "preview": {"class_type": "PreviewImage", "inputs": {"images": ["decode", 0]}},
    }
    outcome = pipeline.run(prompt)
    image = outcome.value("decode")
    assert image.shape == (2, 2 * HEIGHT, 2 * WIDTH, 3) and torch.isfinite(image).all()
    assert len(outcome.result.outputs["preview"]["images"]) == 2


def test_unchanged_prompt_reruns_nothing_and_a_new_seed_reruns_the_sampler(pipeline: Pipeline) -> None:
    first = pipeline.run(text_to_image(seed=5))
    assert {"ckpt", "sample", "decode", "save"} <= set(first.ran)
    again = pipeline.run(text_to_image(seed=5))
    assert again.ran == []
    reseeded = pipeline.run(text_to_image(seed=6))
    assert set(reseeded.ran) == {"sample", "decode", "save"}
    assert not torch.equal(reseeded.value("sample")["samples"], first.value("sample")["samples"])


def test_validation_rejects_a_missing_checkpoint(pipeline: Pipeline) -> None:
    prompt = text_to_image()
    prompt["ckpt"]["inputs"]["ckpt_name"] = "nowhere.safetensors"
    checked = pipeline.validate(prompt)
    assert not checked.ok
    assert "ckpt_name" in json.dumps(checked.node_errors) and "nowhere.safetensors" in json.dumps(checked.node_errors)


def test_a_failing_node_is_named_in_the_failure(pipeline: Pipeline) -> None:
    prompt = {
        "clip": {"class_type": "CLIPLoader", "inputs": {"clip_name": TEXT_ENCODER, "type": "wan"}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["clip", 0]}},
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SINGLE_CHECKPOINT}},
        "guider": {"class_type": "BasicGuider", "inputs": {"model": ["ckpt", 0], "conditioning": ["pos", 0]}},
        "empty": {"class_type": "EmptySD3LatentImage", "inputs": {"width": WIDTH, "height": HEIGHT, "batch_size": 1}},
        "noise": {"class_type": "RandomNoise", "inputs": {"noise_seed": 1}},
        "select": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "sigmas": {"class_type": "BasicScheduler", "inputs": {"model": ["ckpt", 0], "scheduler": "simple",
                                                              "steps": 2, "denoise": 1.0}},
        "custom": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["noise", 0], "guider": ["guider", 0], "sampler": ["select", 0], "sigmas": ["sigmas", 0],
            "latent_image": ["empty", 0]}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["custom", 0], "vae": ["ckpt", 2]}},
        "preview": {"class_type": "PreviewImage", "inputs": {"images": ["decode", 0]}},
    }
    outcome = pipeline.run(prompt, expect="error")
    failure = outcome.result.failure
    assert isinstance(failure, ExecutionFailed) and failure.node_id == "clip"
    assert "CLIPLoader: type 'wan'" in failure.exception_message
