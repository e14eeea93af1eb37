"""Scores the demo LoRA (training/demo_lora.py) through Flowmill's own path: the model manager, `LoraPatch`.

The shipped demo checkpoint is referenced as the loader nodes reference it; the LoRA is a `LoraPatch` on
the diffusion model and the text encoder at each strength (0, 0.5 and 1 by default), merged only inside
the manager's `use` scopes, as a LoraLoader in a workflow does. For each strength:

- the new shape: held-out diamond scenes (attribute combinations training never saw), as full captions
  and as short prompts (no size or position), read with the evaluator recognising a diamond
  (`read_scene(..., shapes=EXTENDED_SHAPES)`); "shape" is the diamond drawn, "shape+colour+background"
  all three right;
- the base world: `evaluate_demo`'s 200 held-out caption/seed pairs read by the base evaluator, so a
  regression shows against the model card, and the share of them drawn as diamonds (read with the
  extended evaluator), so a leak of the new shape into base prompts shows.

Strength 0 is checked bit for bit against the checkpoint without the LoRA on the diamond captions.

Run: `python -m training.evaluate_lora models/loras/flowmill-shapes-diamond.safetensors [--checkpoint DIR]`.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from modeling.files import weights_fingerprint
from modeling.lora import LoraPatch
from modeling.manager import ModelManager, build_model_manager
from modeling.model_refs import ModelRef, WeightsSource
from modeling.reference_loading import reference
from training.demo_lora import NEW_SHAPE, new_shape_scenes
from training.evaluate_demo import (
    EVALUATION_SEED,
    JOINT,
    SHORT_PROMPT_OMITS,
    EvaluationSettings,
    generate,
    recommended_cfg,
)
from training.shapes import ATTRIBUTES, Reading, Scene, caption, make_dataset, read_scene
from training.shapes.vocabulary import EXTENDED_SHAPES

DEMO_CHECKPOINT = Path("models/checkpoints/flowmill-shapes-demo")
NEW_SHAPE_SEED = 20261208  # the held-out diamond scenes' draw
# Noise seeds of the diamond prompts: apart from the base pairs' 0..199.
NEW_SHAPE_NOISE_SEED = 200_000


@dataclass(frozen=True)
class LoraEvaluation:
    strengths: tuple[float, ...] = (0.0, 0.5, 1.0)
    new_shape_scenes: int = 100
    base_pairs: int = 200
    steps: int = 20
    cfg: float | None = None  # None: the checkpoint's recommended value
    batch_size: int = 50


@dataclass(frozen=True)
class DemoModel:
    """References to the three parts of a demo checkpoint, as the checkpoint loader makes them."""

    model: ModelRef
    clip: ModelRef
    vae: ModelRef

    @classmethod
    def at(cls, checkpoint: Path) -> DemoModel:
        fingerprint = weights_fingerprint(checkpoint) or ""  # a missing file fails in reference()
        parts = [reference(checkpoint, component, fingerprint=fingerprint, label=checkpoint.name)
                 for component in ("diffusion_model", "text_encoder", "vae")]
        return cls(*parts)

    def with_lora(self, lora: Path, strength: float) -> DemoModel:
        """The same references with the LoRA at `strength` on the diffusion model and the text encoder."""
        source = WeightsSource(str(lora), weights_fingerprint(lora) or "")
        return DemoModel(
            self.model.patched(LoraPatch(source, strength, "diffusion_model", label=lora.name)),
            self.clip.patched(LoraPatch(source, strength, "text_encoder", label=lora.name)),
            self.vae,
        )

    def generate(self, manager: ModelManager, captions: list[str], seeds: list[int], settings: EvaluationSettings,
                 cfg: float) -> np.ndarray:
        """uint8 [N, 64, 64, 3] images, the models used through the manager (patches merged for the scope)."""
        with manager.use(self.model) as model, manager.use(self.clip) as text_encoder, manager.use(self.vae) as vae:
            return generate(model, text_encoder, vae, captions, seeds, settings, cfg)


def _share_right(readings: list[Reading], scenes: list[Scene], names: tuple[str, ...]) -> float:
    """The share of readings with every attribute in `names` right."""
    return float(np.mean([all(getattr(reading, name) == getattr(scene, name) for name in names)
                          for reading, scene in zip(readings, scenes, strict=True)]))


def new_shape_scores(images: np.ndarray, scenes: list[Scene], attributes: tuple[str, ...]) -> dict[str, float]:
    """Per-attribute accuracy (the evaluator recognising the new shape) and shape+colour+background together."""
    readings = [read_scene(image, shapes=EXTENDED_SHAPES) for image in images]
    return {**{name: _share_right(readings, scenes, (name,)) for name in attributes},
            "shape+colour+background": _share_right(readings, scenes, JOINT)}


def base_scores(images: np.ndarray, scenes: list[Scene]) -> dict[str, float]:
    """The base evaluator's figures (as the model card's), plus the share the extended evaluator reads as diamonds."""
    readings = [read_scene(image) for image in images]
    return {**{name: _share_right(readings, scenes, (name,)) for name in ATTRIBUTES},
            "shape+colour+background": _share_right(readings, scenes, JOINT),
            "all five": _share_right(readings, scenes, ATTRIBUTES),
            "drawn as a diamond": float(np.mean([read_scene(image, shapes=EXTENDED_SHAPES).shape == NEW_SHAPE
                                                 for image in images]))}


def evaluate(lora: Path, checkpoint: Path = DEMO_CHECKPOINT, settings: LoraEvaluation = LoraEvaluation(),
             manager: ModelManager | None = None) -> dict:
    """The figures above for each strength, and whether strength 0 drew exactly what no LoRA draws."""
    manager = manager or build_model_manager(torch.device("cpu"))
    cfg = settings.cfg if settings.cfg is not None else recommended_cfg(checkpoint)
    sampling = EvaluationSettings(steps=settings.steps, cfg=cfg, batch_size=settings.batch_size)
    base = DemoModel.at(checkpoint)

    scenes = new_shape_scenes(settings.new_shape_scenes, seed=NEW_SHAPE_SEED, split="eval")
    rng = np.random.default_rng(NEW_SHAPE_SEED + 1)
    full = [caption(scene, rng) for scene in scenes]
    short = [caption(scene, rng, SHORT_PROMPT_OMITS) for scene in scenes]
    seeds = list(range(NEW_SHAPE_NOISE_SEED, NEW_SHAPE_NOISE_SEED + len(scenes)))
    _, base_captions, base_scenes = make_dataset(settings.base_pairs, seed=EVALUATION_SEED, split="eval")
    base_seeds = list(range(settings.base_pairs))

    without_lora = base.generate(manager, full, seeds, sampling, cfg)
    report: dict = {"settings": {**asdict(settings), "cfg": cfg}, "examples": {"full": full[0], "short": short[0]},
                    "strengths": {}}
    for strength in settings.strengths:
        started = time.perf_counter()
        patched = base.with_lora(lora, strength)
        full_images = patched.generate(manager, full, seeds, sampling, cfg)
        if strength == 0:
            report["strength_0_identical_to_no_lora"] = bool(np.array_equal(full_images, without_lora))
        report["strengths"][str(strength)] = {
            "new_shape_full_captions": new_shape_scores(full_images, scenes, ATTRIBUTES),
            "new_shape_short_prompts": new_shape_scores(patched.generate(manager, short, seeds, sampling, cfg),
                                                        scenes, ("shape", "colour", "background")),
            "base_world_full_captions": base_scores(patched.generate(manager, base_captions, base_seeds, sampling,
                                                                     cfg), base_scenes),
            "seconds": round(time.perf_counter() - started, 1),
        }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lora", type=Path, help="the demo LoRA file")
    parser.add_argument("--checkpoint", type=Path, default=DEMO_CHECKPOINT)
    parser.add_argument("--scenes", type=int, default=LoraEvaluation.new_shape_scenes,
                        help="held-out diamond scenes")
    parser.add_argument("--base-pairs", type=int, default=LoraEvaluation.base_pairs)
    parser.add_argument("--strengths", type=float, nargs="+", default=list(LoraEvaluation.strengths))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = LoraEvaluation(strengths=tuple(args.strengths), new_shape_scenes=args.scenes,
                              base_pairs=args.base_pairs)
    print(json.dumps(evaluate(args.lora, args.checkpoint, settings), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
