"""Scores a demo checkpoint with the shapes-world evaluator, through Flowmill's own loaders and samplers.

The issue's quality figure: 200 held-out caption/seed pairs (captions describing attribute
combinations the model never saw), 20 Euler steps on the "simple" schedule at the checkpoint's
recommended CFG; each generated image is read back by `training.shapes.read_scene` and compared with
the scene its caption describes. A second figure re-describes the same scenes as short prompts that
leave out size and position ("a red circle on a blue background") and scores the attributes they
state. A third figure scores each of `held_out_wordings.EVALUATION_WORDINGS` (the issue's typed-prompt
styles and full captions in sentence shapes training never saw) on its own held-out scenes with fresh
noise seeds. The same function serves the model card, the benchmark and the quality test.

Run: `python -m training.evaluate_demo models/checkpoints/flowmill-shapes-demo [--cfg 4 --pairs 200
--wording-scenes 100]`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from modeling.conditioning import FluxConditioning
from modeling.diffusion_model import DiffusionModel
from modeling.loading import load_checkpoint, read_model_settings
from modeling.text_encoder import TextEncoder
from modeling.vae import Vae
from sampling.guidance import batched_cfg_velocity
from sampling.noise import seeded_noise
from sampling.run import sample
from sampling.samplers import get_sampler
from sampling.schedules import compute_sigmas
from training.shapes import ATTRIBUTES, Reading, Scene, caption, make_dataset, read_scene, reading_accuracy
from training.shapes.held_out_wordings import EVALUATION_WORDINGS, Wording

EVALUATION_SEED = 20261121  # the held-out caption draw; pair i samples with noise seed i
LATENT_SIZE = 8  # 64 px / 8
JOINT = ("shape", "colour", "background")
SHORT_PROMPT_OMITS = frozenset({"size", "position"})
WORDING_SEED = 20261207  # the wording evaluation's scene draw, apart from the caption/seed pairs'
# Noise seeds of the wording evaluation start here: fresh, never the pairs' 0..199.
WORDING_NOISE_SEED = 100_000


@dataclass(frozen=True)
class EvaluationSettings:
    pairs: int = 200
    steps: int = 20
    cfg: float | None = None  # None: the checkpoint's recommended value
    sampler: str = "euler"
    scheduler: str = "simple"
    batch_size: int = 50
    wording_scenes: int = 100  # held-out scenes per evaluation wording; 0 skips that figure


def recommended_cfg(checkpoint: Path) -> float:
    return float(read_model_settings(checkpoint).get("recommended", {}).get("cfg", 1.0))


@torch.no_grad()
def generate_latents(model: DiffusionModel, text_encoder: TextEncoder, captions: list[str], seeds: list[int],
                     settings: EvaluationSettings, cfg: float) -> torch.Tensor:
    """The sampled latents [N, C, 8, 8], one per (caption, seed), sampled in batches."""
    sigmas = compute_sigmas(model.sampling, settings.scheduler, settings.steps)
    sampler = get_sampler(settings.sampler)
    empty_context, empty_pooled = text_encoder.encode("")
    batches = []
    for start in range(0, len(captions), settings.batch_size):
        batch_captions = captions[start:start + settings.batch_size]
        encoded = [text_encoder.encode(text) for text in batch_captions]
        context = torch.cat([hidden for hidden, _ in encoded])
        pooled = torch.cat([pooled for _, pooled in encoded])
        noise = torch.cat([seeded_noise(seed, (1, model.latent_channels, LATENT_SIZE, LATENT_SIZE))
                           for seed in seeds[start:start + settings.batch_size]])

        # Conditional and unconditional on one doubled batch, as the sampler nodes run CFG.
        pair = FluxConditioning(torch.cat([context, empty_context.expand_as(context)]),
                                torch.cat([pooled, empty_pooled.expand_as(pooled)]))

        def paired(x: torch.Tensor, sigma: torch.Tensor, pair: FluxConditioning = pair) -> torch.Tensor:
            return model.velocity(x, sigma, pair)

        batches.append(sample(batched_cfg_velocity(paired, cfg), sampler, sigmas, noise, torch.zeros_like(noise)))
    return torch.cat(batches)


@torch.no_grad()
def decode(vae: Vae, latents: torch.Tensor) -> np.ndarray:
    """uint8 [N, 64, 64, 3] images, as VAEDecode and SaveImage would write them (in parts, to bound memory)."""
    return np.concatenate([vae.decode(part).clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
                           for part in latents.split(50)])


def generate(model: DiffusionModel, text_encoder: TextEncoder, vae: Vae, captions: list[str], seeds: list[int],
             settings: EvaluationSettings, cfg: float) -> np.ndarray:
    """uint8 [N, 64, 64, 3] images, one per (caption, seed), sampled in batches."""
    return decode(vae, generate_latents(model, text_encoder, captions, seeds, settings, cfg))


def _scores(images: np.ndarray, scenes: list[Scene]) -> dict[str, float]:
    """Per-attribute accuracy, plus the stricter reading of the quality target: shape, colour and
    background all right at once. Each image is read once."""
    readings: list[Reading] = [read_scene(image) for image in images]
    joint = np.mean([all(getattr(reading, name) == getattr(scene, name) for name in JOINT)
                     for reading, scene in zip(readings, scenes, strict=True)])
    return {**reading_accuracy(readings, scenes), "shape+colour+background": float(joint)}


def wording_accuracy(model: DiffusionModel, text_encoder: TextEncoder, vae: Vae, settings: EvaluationSettings,
                     cfg: float, wordings: tuple[Wording, ...] = EVALUATION_WORDINGS) -> dict[str, dict]:
    """{wording name: scores} for prompts in each wording, each on `settings.wording_scenes` held-out scenes
    (the same scenes for every wording) with its own fresh noise seeds. Short wordings are scored on the
    attributes they state; full ones on all five."""
    _, _, scenes = make_dataset(settings.wording_scenes, seed=WORDING_SEED, split="eval")
    results = {}
    for index, wording in enumerate(wordings):
        rng = np.random.default_rng(WORDING_SEED + 1 + index)
        prompts = [wording.prompt(scene, rng) for scene in scenes]
        first_seed = WORDING_NOISE_SEED + index * settings.wording_scenes
        seeds = list(range(first_seed, first_seed + len(scenes)))
        scores = _scores(generate(model, text_encoder, vae, prompts, seeds, settings, cfg), scenes)
        stated = (*ATTRIBUTES, "shape+colour+background") if wording.full else (*JOINT, "shape+colour+background")
        results[wording.name] = {"held_out": wording.held_out, "full": wording.full, "scenes": len(scenes),
                                 "example": prompts[0], **{name: scores[name] for name in stated}}
    return results


def evaluate(checkpoint: Path, settings: EvaluationSettings = EvaluationSettings()) -> dict:
    """Per-attribute accuracy and the share of images with shape, colour and background right, for full
    captions and for short prompts (the same scenes without size and position)."""
    model, text_encoder, vae = load_checkpoint(checkpoint, device="cpu")
    cfg = settings.cfg if settings.cfg is not None else recommended_cfg(checkpoint)
    _, captions, scenes = make_dataset(settings.pairs, seed=EVALUATION_SEED, split="eval")
    seeds = list(range(settings.pairs))
    images = generate(model, text_encoder, vae, captions, seeds, settings, cfg)

    rng = np.random.default_rng(EVALUATION_SEED + 1)
    short_prompts = [caption(scene, rng, SHORT_PROMPT_OMITS) for scene in scenes]
    short_scores = _scores(generate(model, text_encoder, vae, short_prompts, seeds, settings, cfg), scenes)
    report = {"settings": {**asdict(settings), "cfg": cfg},
              "accuracy": _scores(images, scenes),
              # Short prompts state only these, so size and position are not scored.
              "short_prompt_accuracy": {name: short_scores[name] for name in (*JOINT, "shape+colour+background")}}
    if settings.wording_scenes:
        report["wording_accuracy"] = wording_accuracy(model, text_encoder, vae, settings, cfg)
        report["held_out_full_captions"] = held_out_full_captions(report["wording_accuracy"])
    return report


def held_out_full_captions(wordings: dict[str, dict]) -> float:
    """Share of images with shape, colour and background right over all held-out full-caption wordings."""
    full = [scores for scores in wordings.values() if scores["full"] and scores["held_out"]]
    return float(sum(s["shape+colour+background"] * s["scenes"] for s in full) / sum(s["scenes"] for s in full))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a demo checkpoint folder")
    parser.add_argument("--pairs", type=int, default=EvaluationSettings.pairs)
    parser.add_argument("--steps", type=int, default=EvaluationSettings.steps)
    parser.add_argument("--cfg", type=float, default=None, help="default: the checkpoint's recommended CFG")
    parser.add_argument("--sampler", default=EvaluationSettings.sampler)
    parser.add_argument("--wording-scenes", type=int, default=EvaluationSettings.wording_scenes,
                        help="held-out scenes per evaluation wording (0: skip the wording figure)")
    args = parser.parse_args(argv)
    settings = EvaluationSettings(pairs=args.pairs, steps=args.steps, cfg=args.cfg, sampler=args.sampler,
                                  wording_scenes=args.wording_scenes)
    print(json.dumps(evaluate(args.checkpoint, settings), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
