"""Image editing on the shipped demo model: FlowEdit, RF-Edit, RF-Inversion and SDEdit on shapes-world edits.

Edit pairs: `--per-kind` pairs (default 30, so 120) for each kind of change, colour, shape,
background and size. A source scene is drawn from the held-out (eval) split, one attribute is
changed to another allowed value, the source is rendered at 64 px and encoded with the demo VAE,
and the two captions are the same sentence with that attribute's word swapped. Two prompt styles
run on the same scenes: "full" captions name all five attributes ("a small red circle at the top
on a blue background"), as FlowEdit's evaluation prompts describe the whole scene; "short" ones
state shape, colour and background only (and size for size edits: "a red circle on a blue
background" -> "a green circle on a blue background"), so size and position must survive from
the image alone, which the demo model, weak on short prompts, makes much harder.

Each editor edits every pair; the result is decoded and read back with the shapes-world evaluator:
- success: the evaluator reads the target's value of the changed attribute;
- preservation: it reads the source's value of every other attribute (shape, colour, background,
  size, position); for colour edits also the intersection-over-union of the shape masks of the
  source render and the edit;
- time: wall time per edit (batched per kind, divided by the pairs).
"source reconstruction" (VAE encode and decode, no edit) shows what the evaluator reads without
any edit: the ceiling of preservation. Target: FlowEdit succeeds in at least 80% of edits with
preservation of at least 90%, judged with full prompts (the paper's protocol).

Run: `python benchmarks/editing.py` (a few minutes on a 2-core CPU; `--per-kind 8` for a quick
look). Timings are taken in one process, one editor after another, on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from modeling.feature_sharing import (  # noqa: E402
    FeatureBank,
    ValueSharing,
    default_blocks,
    shared_value_features,
    single_blocks,
)
from modeling.loading import load_checkpoint  # noqa: E402
from modeling.guidance import Prompting, edit_velocities, side_velocity  # noqa: E402
from modeling.conditioning import FluxConditioning  # noqa: E402
from sampling.contract import VelocityModel  # noqa: E402
from sampling.flowedit import FLOWEDIT_DEFAULTS, FlowEditSettings, flowedit  # noqa: E402
from sampling.noise import seeded_noise  # noqa: E402
from sampling.rf_edit import rf_edit  # noqa: E402
from sampling.rf_inversion import RFInversionSettings, rf_inversion_edit  # noqa: E402
from sampling.run import sample  # noqa: E402
from sampling.samplers import get_sampler  # noqa: E402
from sampling.schedules import compute_sigmas  # noqa: E402
from training.shapes.captions import caption  # noqa: E402
from training.shapes.dataset import split_of  # noqa: E402
from training.shapes.evaluate import read_scene, shape_mask  # noqa: E402
from training.shapes.render import render  # noqa: E402
from training.shapes.scene import ATTRIBUTES, Scene, sample_scene  # noqa: E402
from training.shapes.vocabulary import COLOURS, SHAPES, SIZES  # noqa: E402

CHECKPOINT = PROJECT / "models" / "checkpoints" / "flowmill-shapes-demo"
KINDS = ("colour", "shape", "background", "size")
# Two ways to write the prompts. "full" names all five attributes in both prompts, as FlowEdit's
# evaluation prompts describe the whole scene; "short" leaves size and position out (unless size is the
# edit), as people often write them, so those must survive from the image alone.
PROMPT_STYLES: dict[str, frozenset[str]] = {"full": frozenset(), "short": frozenset({"size", "position"})}
PAIRS_SEED = 20261122
FLOWEDIT_SUCCESS_TARGET = 0.80
FLOWEDIT_PRESERVATION_TARGET = 0.90


@dataclass(frozen=True)
class EditPair:
    kind: str
    source: Scene
    target: Scene
    source_caption: str
    target_caption: str


@dataclass(frozen=True)
class RFEditSettings:
    steps: int = 25
    inject: int = 5
    target_cfg: float = 4.0


@dataclass(frozen=True)
class SDEditSettings:
    steps: int = 20
    denoise: float = 0.75
    target_cfg: float = 4.0


@dataclass(frozen=True)
class EditorSettings:
    """What each editor runs with on the demo model (the defaults its node and preset ship)."""

    flowedit: FlowEditSettings = FLOWEDIT_DEFAULTS["demo"]
    rf_edit: RFEditSettings = RFEditSettings()
    rf_inversion: RFInversionSettings = RFInversionSettings()
    rf_inversion_steps: int = 28
    rf_inversion_cfg: float = 4.0
    sdedit: SDEditSettings = SDEditSettings()


def changed(scene: Scene, kind: str, rng: np.random.Generator) -> Scene:
    """`scene` with attribute `kind` set to another value the world allows (a shape never matches its background)."""
    if kind == "colour":
        options = [c for c in COLOURS if c not in (scene.colour, scene.background)]
    elif kind == "background":
        options = [c for c in COLOURS if c not in (scene.background, scene.colour)]
    elif kind == "shape":
        options = [s for s in SHAPES if s != scene.shape]
    else:
        options = [s for s in SIZES if s != scene.size]
    return replace(scene, **{kind: options[int(rng.integers(len(options)))]})


def edit_pairs(per_kind: int, unstated: frozenset[str] = frozenset(), seed: int = PAIRS_SEED) -> list[EditPair]:
    """`per_kind` pairs of each kind from held-out scenes; both captions share one wording draw and leave out
    the `unstated` attributes, except the one edited."""
    rng = np.random.default_rng(seed)
    pairs = []
    for kind in KINDS:
        for _ in range(per_kind):
            source = sample_scene(rng)
            while split_of(source) != "eval":
                source = sample_scene(rng)
            target = changed(source, kind, rng)
            wording, omit = int(rng.integers(2**32)), unstated - {kind}
            pairs.append(EditPair(kind, source, target, caption(source, np.random.default_rng(wording), omit),
                                  caption(target, np.random.default_rng(wording), omit)))
    return pairs


class DemoEditing:
    """The demo checkpoint, its encoders, and one kind's pairs as latents and prompts."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model, self.text_encoder, self.vae = load_checkpoint(CHECKPOINT, device="cpu")
        empty_context, empty_pooled = self.text_encoder.encode("")
        self.empty = FluxConditioning(empty_context, empty_pooled)

    @torch.no_grad()
    def condition(self, captions: list[str]) -> FluxConditioning:
        encoded = [self.text_encoder.encode(text) for text in captions]
        return FluxConditioning(torch.cat([hidden for hidden, _ in encoded]), torch.cat([pooled for _, pooled in encoded]))

    def prompting(self, captions: list[str], cfg: float) -> Prompting:
        return Prompting((self.condition(captions),), (self.empty,), cfg)

    @torch.no_grad()
    def encode(self, scenes: list[Scene]) -> Tensor:
        pixels = np.stack([render(scene) for scene in scenes])
        return self.vae.encode(torch.from_numpy(pixels).float() / 255)

    @torch.no_grad()
    def decode(self, latents: Tensor) -> np.ndarray:
        return self.vae.decode(latents).clamp(0, 1).mul(255).round().to(torch.uint8).numpy()


Editor = Callable[[DemoEditing, Tensor, list[EditPair]], Tensor]


def run_flowedit(settings: FlowEditSettings) -> Editor:
    def edit(demo: DemoEditing, latents: Tensor, pairs: list[EditPair]) -> Tensor:
        source = demo.prompting([p.source_caption for p in pairs], settings.source_cfg)
        target = demo.prompting([p.target_caption for p in pairs], settings.target_cfg)
        return flowedit(edit_velocities(demo.model, source, target, len(pairs)), latents,
                        compute_sigmas(demo.model.sampling, "simple", settings.steps), n_max=settings.n_max,
                        n_min=settings.n_min, n_avg=settings.n_avg,
                        generator=torch.Generator().manual_seed(settings.seed))

    return edit


def inverting_sides(demo: DemoEditing, pairs: list[EditPair], target_cfg: float) -> tuple[VelocityModel, ...]:
    """(source, target) velocity models of the editors that invert first: the source prompt unguided, as the nodes."""
    source = Prompting((demo.condition([p.source_caption for p in pairs]),), None, 1.0)
    target = demo.prompting([p.target_caption for p in pairs], target_cfg)
    return side_velocity(demo.model, source, len(pairs)), side_velocity(demo.model, target, len(pairs))


def run_rf_edit(settings: RFEditSettings) -> Editor:
    def edit(demo: DemoEditing, latents: Tensor, pairs: list[EditPair]) -> Tensor:
        model = demo.model
        source, target = inverting_sides(demo, pairs, settings.target_cfg)
        sharing = ValueSharing(FeatureBank())
        with shared_value_features(model.module, default_blocks(len(single_blocks(model.module))), sharing):
            return rf_edit(source, target, latents, compute_sigmas(model.sampling, "simple", settings.steps),
                           inject=settings.inject, sharing=sharing)

    return edit


def run_rf_inversion(settings: RFInversionSettings, steps: int, cfg: float) -> Editor:
    def edit(demo: DemoEditing, latents: Tensor, pairs: list[EditPair]) -> Tensor:
        source, target = inverting_sides(demo, pairs, cfg)
        return rf_inversion_edit(source, target, latents, compute_sigmas(demo.model.sampling, "simple", steps),
                                 settings, generator=torch.Generator().manual_seed(0))

    return edit


def run_sdedit(settings: SDEditSettings) -> Editor:
    def edit(demo: DemoEditing, latents: Tensor, pairs: list[EditPair]) -> Tensor:
        model = demo.model
        target = side_velocity(model, demo.prompting([p.target_caption for p in pairs], settings.target_cfg),
                               len(pairs))
        sigmas = compute_sigmas(model.sampling, "simple", settings.steps, settings.denoise)
        return sample(target, get_sampler("euler"), sigmas, seeded_noise(0, tuple(latents.shape)), latents)

    return edit


def editors(settings: EditorSettings) -> dict[str, Editor]:
    return {
        "flowedit": run_flowedit(settings.flowedit),
        "rf_edit": run_rf_edit(settings.rf_edit),
        "rf_inversion": run_rf_inversion(settings.rf_inversion, settings.rf_inversion_steps,
                                         settings.rf_inversion_cfg),
        "sdedit": run_sdedit(settings.sdedit),
    }


def identity(demo: DemoEditing, latents: Tensor, pairs: list[EditPair]) -> Tensor:
    """The 'source reconstruction' row: no edit at all."""
    return latents


@dataclass(frozen=True)
class KindScore:
    edits: int
    success: float
    preservation: float
    both: float
    mask_iou: float | None
    ms_per_edit: float


def score(images: np.ndarray, pairs: list[EditPair], seconds: float) -> KindScore:
    succeeded, preserved, ious = [], [], []
    for image, pair in zip(images, pairs, strict=True):
        reading = read_scene(image)
        succeeded.append(getattr(reading, pair.kind) == getattr(pair.target, pair.kind))
        preserved.append(all(getattr(reading, name) == getattr(pair.source, name)
                             for name in ATTRIBUTES if name != pair.kind))
        if pair.kind == "colour":
            before, after = shape_mask(render(pair.source)), shape_mask(image)
            ious.append(float((before & after).sum() / max((before | after).sum(), 1)))
    both = [s and p for s, p in zip(succeeded, preserved, strict=True)]
    return KindScore(len(pairs), float(np.mean(succeeded)), float(np.mean(preserved)), float(np.mean(both)),
                     float(np.mean(ious)) if ious else None, 1000 * seconds / len(pairs))


def evaluate(demo: DemoEditing, editor: Editor, pairs: list[EditPair]) -> dict[str, KindScore]:
    """One editor on every kind's pairs (batched per kind)."""
    scores = {}
    for kind in KINDS:
        chosen = [pair for pair in pairs if pair.kind == kind]
        latents = demo.encode([pair.source for pair in chosen])
        start = time.perf_counter()
        with torch.no_grad():
            edited = editor(demo, latents, chosen)
        seconds = time.perf_counter() - start
        scores[kind] = score(demo.decode(edited), chosen, seconds)
    return scores


def overall(scores: dict[str, KindScore]) -> KindScore:
    edits = sum(s.edits for s in scores.values())

    def mean(name: str) -> float:
        return sum(getattr(s, name) * s.edits for s in scores.values()) / edits

    return KindScore(edits, mean("success"), mean("preservation"), mean("both"), scores["colour"].mask_iou,
                     mean("ms_per_edit"))


def print_scores(name: str, scores: dict[str, KindScore]) -> None:
    for kind, s in [*scores.items(), ("all", overall(scores))]:
        iou = f"{s.mask_iou:6.3f}" if s.mask_iou is not None and kind in ("colour", "all") else "     -"
        print(f"{name:22} {kind:10} {s.edits:5d} {100 * s.success:8.1f}% {100 * s.preservation:8.1f}% "
              f"{100 * s.both:7.1f}% {iou:>8} {s.ms_per_edit:9.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-kind", type=int, default=30, help="edit pairs per kind of change (4 kinds)")
    parser.add_argument("--editors", nargs="*", default=None, help="a subset of flowedit rf_edit rf_inversion sdedit")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    demo = DemoEditing()
    settings = EditorSettings()
    chosen = {name: editor for name, editor in editors(settings).items()
              if args.editors is None or name in args.editors}
    print(f"demo model, {4 * args.per_kind} edit pairs ({args.per_kind} per kind) from held-out scenes, 64x64")
    print(f"settings: {settings}")
    figures: dict[str, dict[str, dict[str, dict]]] = {}
    for style, unstated in PROMPT_STYLES.items():
        pairs = edit_pairs(args.per_kind, unstated)
        print(f"\n{style} prompts, e.g. {pairs[0].source_caption!r} -> {pairs[0].target_caption!r}")
        print(f"{'editor':22} {'kind':10} {'edits':>5} {'success':>9} {'preserved':>9} {'both':>8} "
              f"{'mask IoU':>8} {'ms/edit':>9}")
        figures[style] = {}
        for name, editor in {"source reconstruction": identity, **chosen}.items():
            scores = evaluate(demo, editor, pairs)
            print_scores(name, scores)
            figures[style][name] = {kind: vars(s) for kind, s in [*scores.items(), ("all", overall(scores))]}
    if "flowedit" in figures["full"]:
        for style in PROMPT_STYLES:
            result = figures[style]["flowedit"]["all"]
            met = (result["success"] >= FLOWEDIT_SUCCESS_TARGET
                   and result["preservation"] >= FLOWEDIT_PRESERVATION_TARGET)
            judged = "target met" if met else "target not met"
            print(f"FlowEdit, {style} prompts: success {100 * result['success']:.1f}% (target "
                  f"{FLOWEDIT_SUCCESS_TARGET:.0%}), preservation {100 * result['preservation']:.1f}% (target "
                  f"{FLOWEDIT_PRESERVATION_TARGET:.0%}): {judged if style == 'full' else judged + ' (reported only)'}")
    if args.json:
        args.json.write_text(json.dumps({"pairs_per_style": 4 * args.per_kind, "settings": repr(settings),
                                         "scores": figures}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
