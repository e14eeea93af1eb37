"""The demo LoRA: the shapes world's diamond extension, the training script, and the shipped file in real runs.

Generations go through Flowmill's own path (the model manager with a `LoraPatch`, or the LoraLoader node
in an executed graph) on the shipped demo checkpoint, deterministic on the CPU. The figures at strengths
0 / 0.5 / 1 on 100 held-out scenes are `python -m training.evaluate_lora` (models/loras/*.md); here a
fixed handful must come out as the card says.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.paths import Folders
from engine.registry import NodeRegistry
from modeling.files import read_metadata
from modeling.lora import read_lora
from modeling.lora.formats import parameter_shapes
from modeling.manager import build_model_manager
from tests.fixtures.pipeline import Pipeline
from training.demo_lora import NEW_SHAPE, LoraTraining, new_shape_scenes, train
from training.evaluate_demo import EvaluationSettings, recommended_cfg
from training.evaluate_lora import DemoModel
from training.shapes import Scene, caption, degrade, make_dataset, read_scene, render, sample_scene, split_of
from training.shapes.scene import ExtendedScene
from training.shapes.vocabulary import EXTENDED_SHAPES, SHAPES

PROJECT = Path(__file__).resolve().parents[2]
DEMO = PROJECT / "models" / "checkpoints" / "flowmill-shapes-demo"
LORA = PROJECT / "models" / "loras" / "flowmill-shapes-diamond.safetensors"
# sha256 over a 300-scene dataset (images, captions, scenes) and the base evaluator's readings of 120 degraded
# renders, computed with the shapes world as committed before the diamond extension existed.
BASE_WORLD_FINGERPRINT = "523b31ace685b7a1306beae55cab1f026603b5efa17b476c6bec5789f33efcac"


def base_world_fingerprint() -> str:
    digest = hashlib.sha256()
    images, captions, scenes = make_dataset(300, seed=7, split=None)
    digest.update(images.tobytes())
    digest.update("|".join(captions).encode())
    digest.update(repr(scenes).encode())
    rng = np.random.default_rng(8)
    digest.update(repr([read_scene(degrade(image, rng)) for image in images[:120]]).encode())
    return digest.hexdigest()


def test_the_extension_leaves_every_base_draw_caption_render_and_reading_as_it_was() -> None:
    assert base_world_fingerprint() == BASE_WORLD_FINGERPRINT
    rng = np.random.default_rng(0)
    assert NEW_SHAPE not in {sample_scene(rng).shape for _ in range(3000)}
    with pytest.raises(ValueError, match="shape must be one of"):
        Scene(NEW_SHAPE, "red", "blue", "large", "center")
    with pytest.raises(ValueError, match="colour and background must differ"):
        ExtendedScene(NEW_SHAPE, "red", "red", "large", "center")


def test_the_evaluator_reads_diamonds_only_when_asked() -> None:
    scenes = new_shape_scenes(60, seed=3, split="train")
    assert all(split_of(scene) == "train" for scene in scenes)
    rng = np.random.default_rng(4)
    for scene in scenes:
        image = render(scene)
        extended = read_scene(image, shapes=EXTENDED_SHAPES)
        assert (extended.shape, extended.colour, extended.background, extended.size, extended.position) == (
            NEW_SHAPE, scene.colour, scene.background, scene.size, scene.position)
        assert read_scene(degrade(image, rng), shapes=EXTENDED_SHAPES).shape == NEW_SHAPE
        assert read_scene(image).shape in SHAPES  # the base reader names a base shape, whatever it sees
    assert NEW_SHAPE in caption(scenes[0], np.random.default_rng(5))


def test_a_short_training_run_writes_a_file_the_loader_matches_to_both_models(tmp_path: Path) -> None:
    out = tmp_path / "smoke.safetensors"
    settings = LoraTraining(steps=3, batch_size=4, new_shape_scenes=8, base_scenes=8, warmup_steps=1, rank=4,
                            alpha=4.0)
    report = train(settings, DEMO, out)
    assert report["train_seconds"] > 0 and np.isfinite(report["final_loss"])
    assert json.loads(read_metadata(out)["flowmill.lora"])["training"]["rank"] == 4
    lora = read_lora(out)
    model, clip = DemoModel.at(DEMO).model, DemoModel.at(DEMO).clip
    manager = build_model_manager(torch.device("cpu"))
    for reference, changed in ((model, "transformer_blocks.0.attn.to_q.weight"),
                               (clip, "embeddings.token_embedding.weight")):
        with manager.use(reference) as loaded:
            match = lora.match(reference.component, parameter_shapes(loaded.module), out.name)
        assert not match.unmatched and changed in {change.target for change in match.changes}
    # Three steps move the factors: `up` starts at zero, so a file of zeros would mean nothing trained.
    assert any(value.abs().max() > 0 for key, value in lora.state.items() if key.endswith("lora_B.weight")
               and key.startswith("transformer."))


@pytest.fixture(scope="module")
def cfg() -> float:
    return recommended_cfg(DEMO)


@pytest.fixture(scope="module")
def held_out() -> tuple[list[str], list[int]]:
    scenes = new_shape_scenes(10, seed=11, split="eval")
    rng = np.random.default_rng(12)
    return [caption(scene, rng, frozenset({"size", "position"})) for scene in scenes], list(range(300, 310))


def test_the_shipped_lora_teaches_the_diamond_and_strength_zero_is_bit_identical(held_out, cfg: float) -> None:
    prompts, seeds = held_out
    manager = build_model_manager(torch.device("cpu"))
    settings = EvaluationSettings(cfg=cfg, batch_size=10)
    base = DemoModel.at(DEMO)
    plain = base.generate(manager, prompts, seeds, settings, cfg)
    assert np.array_equal(base.with_lora(LORA, 0.0).generate(manager, prompts, seeds, settings, cfg), plain)
    taught = base.with_lora(LORA, 1.0).generate(manager, prompts, seeds, settings, cfg)
    diamonds = [read_scene(image, shapes=EXTENDED_SHAPES).shape == NEW_SHAPE for image in (plain, taught)
                for image in image]
    assert sum(diamonds[:10]) <= 1, "the base model should not draw diamonds"
    assert sum(diamonds[10:]) >= 6, f"the LoRA drew {sum(diamonds[10:])} diamonds in 10"


def lora_graph(strength_model: float, strength_clip: float) -> dict:
    return {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": DEMO.name}},
        "lora": {"class_type": "LoraLoader", "inputs": {
            "model": ["ckpt", 0], "clip": ["ckpt", 1], "lora_name": LORA.name,
            "strength_model": strength_model, "strength_clip": strength_clip}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a yellow diamond on a blue background",
                                                           "clip": ["lora", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["lora", 1]}},
        "empty": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "sample": {"class_type": "KSampler", "inputs": {
            "model": ["lora", 0], "seed": 8, "steps": 20, "cfg": 4.0, "sampler_name": "euler", "scheduler": "simple",
            "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": ["empty", 0], "denoise": 1.0}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["ckpt", 2]}},
        "preview": {"class_type": "PreviewImage", "inputs": {"images": ["decode", 0]}},
    }


def test_the_lora_loader_node_loads_the_shipped_file_and_changes_both_models(registry: NodeRegistry,
                                                                           folders: Folders) -> None:
    shipped = dataclasses.replace(folders, models_dir=PROJECT / "models")

    def image(strength_model: float, strength_clip: float) -> torch.Tensor:
        return Pipeline(registry, shipped).run(lora_graph(strength_model, strength_clip)).value("decode")

    plain, full = image(0.0, 0.0), image(1.0, 1.0)
    assert (full - plain).abs().max() > 0.1
    assert (image(1.0, 0.0) - plain).abs().max() > 1e-3 and (image(0.0, 1.0) - plain).abs().max() > 1e-3
    drawn = read_scene((full[0].numpy() * 255).round().astype(np.uint8), shapes=EXTENDED_SHAPES)
    assert (drawn.shape, drawn.colour, drawn.background) == (NEW_SHAPE, "yellow", "blue")
