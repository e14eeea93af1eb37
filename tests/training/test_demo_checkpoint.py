"""The shipped demo checkpoint: its size, its layout, and real generations scored by the evaluator.

Deterministic on the CPU: the noise comes from the seed on the CPU and the model runs in float32.
The 200-pair quality figure is re-measured by `benchmarks/generate.py`; here a fixed handful of
captions must come out right, attribute by attribute.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from modeling.loading import load_checkpoint, read_model_settings
from training.evaluate_demo import EvaluationSettings, generate, recommended_cfg
from training.shapes import Scene, render, score

DEMO = Path(__file__).resolve().parents[2] / "models" / "checkpoints" / "flowmill-shapes-demo"
CAPTIONS = [
    "a large red circle at the center on a blue background",
    "a large yellow star at the top left on a purple background",
    "green background, small white square in the bottom right corner",
]


@pytest.fixture(scope="module")
def demo() -> tuple:
    return load_checkpoint(DEMO, device="cpu")


def test_weights_are_under_50_mb_and_in_the_documented_layout() -> None:
    weights = list(DEMO.rglob("*.safetensors"))
    assert {path.parent.name for path in weights} == {"transformer", "text_encoder", "vae"}
    assert sum(path.stat().st_size for path in weights) < 50e6
    assert (DEMO / "MODEL_CARD.md").is_file() and (DEMO / "vae" / "latent_preview.json").is_file()
    assert read_model_settings(DEMO)["recommended"]["steps"] == 20


def test_fixed_seeds_and_captions_generate_what_the_captions_say(demo: tuple) -> None:
    model, text_encoder, vae = demo
    settings = EvaluationSettings()
    images = generate(model, text_encoder, vae, CAPTIONS, [0] * len(CAPTIONS), settings, recommended_cfg(DEMO))
    for image, caption in zip(images, CAPTIONS, strict=True):
        assert all(score(image, caption).values()), (caption, score(image, caption))
    again = generate(model, text_encoder, vae, CAPTIONS[:1], [0], settings, recommended_cfg(DEMO))
    assert np.array_equal(again[0], images[0])  # same seed, same pixels


def test_the_default_workflow_prompt_and_seed_generate_a_red_circle_on_blue(demo: tuple) -> None:
    """Short prompts leave size and position to the model; the default workflow's seed (8) gives a large circle.
    Across seeds 0-19 this prompt comes out right 12 times (small circles come out square-ish)."""
    model, text_encoder, vae = demo
    prompt = "a red circle on a blue background"
    image = generate(model, text_encoder, vae, [prompt], [8], EvaluationSettings(), recommended_cfg(DEMO))[0]
    assert score(image, prompt) == {"shape": True, "colour": True, "background": True}


def test_the_fitted_latent_preview_resembles_the_image(demo: tuple) -> None:
    _, _, vae = demo

    def preview_and_target(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
        pixels = torch.from_numpy(render(scene)).float().div(255)[None]
        preview = vae.latent_preview.to_rgb(vae.encode(pixels)).astype(np.float32) / 255
        return preview, F.adaptive_avg_pool2d(pixels.permute(0, 3, 1, 2), 8)[0].permute(1, 2, 0).numpy()

    preview, target = preview_and_target(Scene("star", "yellow", "blue", "large", "center"))
    _, other = preview_and_target(Scene("ring", "green", "red", "large", "top left"))
    # A linear projection is rough (mean error ~0.13 here), but far closer to its own image than to another.
    assert np.abs(preview - target).mean() < 0.2
    assert np.abs(preview - target).mean() < 0.5 * np.abs(preview - other).mean()
