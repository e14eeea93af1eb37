"""Writes MODEL_CARD.md for the demo checkpoint from the training logs and the evaluation report."""

from __future__ import annotations

import json
from pathlib import Path


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _size_mb(folder: Path) -> float:
    return sum(file.stat().st_size for file in folder.rglob("*.safetensors")) / 1e6


def _table(scores: dict[str, float]) -> str:
    return "\n".join(["| attribute | accuracy |", "| --- | --- |",
                      *(f"| {name} | {value:.1%} |" for name, value in scores.items())])


def _wording_table(wordings: dict[str, dict]) -> str:
    rows = ["| wording | example | held out | shape | colour | background | all three |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, scores in wordings.items():
        rows.append(f"| `{name}` | {scores['example']} | {'yes' if scores['held_out'] else 'no (trained)'} | "
                    f"{scores['shape']:.0%} | {scores['colour']:.0%} | {scores['background']:.0%} | "
                    f"{scores['shape+colour+background']:.0%} |")
    return "\n".join(rows)


def _widen_line(widen: dict) -> str:
    if not widen:
        return ""
    settings = widen.get("training", {})
    return (f"- Widened-grammar fine-tuning: {settings.get('steps', '?')} more steps of batch "
            f"{settings.get('batch_size', '?')} at learning rate {settings.get('learning_rate', '?')} on captions "
            f"drawn from the base and the widened grammar (`captions.WIDENED_TEMPLATES`: no article or \"one\", "
            f"\"over\" / \"in front of\", \";\" and \"and\" as separators, both orders), "
            f"{settings.get('partial_captions', 0):.0%} drawn partial, "
            f"{settings.get('joined_background_share', 0):.0%} of the widened ones drawn from the sentence shapes "
            f"ending in "
            f"\", <colour> background\", and a caption leaving the size open always "
            f"describing a large shape ({widen.get('train_seconds', 0) / 60:.0f} minutes).\n")


def _wording_section(evaluation: dict) -> str:
    wordings = evaluation.get("wording_accuracy")
    if not wordings:
        return ""
    scenes = next(iter(wordings.values()))["scenes"]
    return f"""
Typed prompts in other wordings (`training/shapes/held_out_wordings.py`), {scenes} held-out scenes per
wording with fresh noise seeds. Held-out wordings are sentence shapes no training caption has (a test
enumerates both grammars); short wordings are scored on shape, colour and background, full ones
("full:") on all five (size and position are in `evaluation.json`):

{_wording_table(wordings)}
"""


def write_model_card(out: Path, logs: Path, evaluation: dict) -> None:
    vae = _read(logs / "vae_report.json")
    flow = _read(logs / "flow_report.json")
    flow_settings = flow.get("training", {})
    finetune = _read(logs / "finetune_report.json")
    finetune_settings = finetune.get("training", {})
    widen = _read(logs / "widen_report.json")
    wordings_followed = " and the typed-prompt wordings above" if widen else ""
    open_size = ("A prompt that leaves the size open gets a large shape." if widen else
                 "When a prompt leaves the size open, small shapes often come out with the wrong outline (small "
                 'circles look square): naming the size ("a large red circle ...") avoids it.')
    partial = f"{finetune_settings.get('partial_captions', 0):.0%}"
    parameters = flow.get("parameters", {})
    run = evaluation["settings"]
    transformer_row = ("diffusers `FluxTransformer2DModel`: 2 double + 4 single blocks, 6 heads of 32, in_channels 64 "
                       "(16 latent channels x 2x2 patches), no guidance embedding")
    vae_row = (f"diffusers `AutoencoderKL`: 16 latent channels, 8x downsampling, "
               f"shift {vae.get('shift_factor', 0):.4f}, scale {vae.get('scaling_factor', 0):.4f}; "
               "`latent_preview.json` is the fitted latent-to-RGB projection for live previews")
    text_row = "transformers `CLIPTextModel`: 3 layers, hidden 128, full CLIP vocabulary"
    card = f"""# Flowmill shapes demo (flux family)

A small rectified-flow text-to-image model that ships with Flowmill so that a fresh install
generates real, checkable 64x64 images on a CPU in seconds, with no download. It uses exactly the
loaders, samplers and nodes that FLUX-family checkpoints use.

## Components (diffusers layout)

| folder | architecture | parameters |
| --- | --- | --- |
| transformer/ | {transformer_row} | {parameters.get("transformer", 0):,} |
| text_encoder/ | {text_row} | {parameters.get("text_encoder", 0):,} |
| tokenizer/ | OpenAI's CLIP BPE (49,408 tokens), 24-token windows (longer prompts are split into windows) | |
| vae/ | {vae_row} | |

Weights on disk: {_size_mb(out):.1f} MB (transformer and text encoder in fp16, upcast on load).

## Data

The procedural shapes world (`training/shapes/`): one shape (circle, square, triangle, star, ring,
cross) in one of 10 colours on a background of another, small or large, in one of 9 grid cells,
with captions in varied wording ("a large red circle at the top left on a blue background",
"blue background, small yellow star in the center"). In the fine-tuning stage {partial} of the
captions leave out the size, the position or both ("a red circle on a blue background"), as short
prompts do. 10% of attribute combinations are held out of training;
every evaluation caption describes a held-out combination.

## Training

`python -m training.demo --out DIR --seed 0` reproduces this folder on a 2-core CPU.

- VAE: {vae.get("training", {}).get("steps", "?")} steps of shape- and edge-weighted L1. Held-out
  reconstructions: PSNR {vae.get("psnr_db", "?")} dB, and the evaluator reads them back as:

{_table(vae.get("evaluator_accuracy", {}))}

- Text encoder and transformer, jointly from scratch: rectified flow (`x_t = (1 - t) x0 + t noise`,
  target `noise - x0`, logit-normal t shifted towards noise by {flow_settings.get("timestep_shift", "?")}), 10% caption
  dropout, EMA {flow_settings.get("ema_decay", "?")},
  {flow_settings.get("steps", "?")} steps of batch {flow_settings.get("batch_size", "?")}
  ({flow.get("train_seconds", 0) / 60:.0f} minutes), every caption naming all five attributes.
- Short-prompt fine-tuning: {finetune_settings.get("steps", "?")} more steps at learning rate
  {finetune_settings.get("learning_rate", "?")} with {partial} of the captions leaving out size and/or
  position ({finetune.get("train_seconds", 0) / 60:.0f} minutes). Training with partial captions from the start
  left position at chance (9%): placement must be learnt first.
{_widen_line(widen)}
Loss logs: `training/*.jsonl` beside this card.

## Evaluation

{run["pairs"]} held-out caption/seed pairs, {run["steps"]} {run["sampler"]} steps on the
"{run["scheduler"]}" schedule, CFG {run["cfg"]}; each image is read back by the shapes evaluator
(`training/shapes/evaluate.py`):

{_table(evaluation["accuracy"])}

The same scenes and seeds as short prompts that leave out size and position ("a red circle on a
blue background"), scored on the attributes they state:

{_table(evaluation.get("short_prompt_accuracy", {}))}
{_wording_section(evaluation)}
Recommended settings (`flowmill.json`): CFG {run["cfg"]}, 20 steps, euler, simple schedule, 64x64.

## Limits

It knows only the shapes world at 64x64: other sizes and other subjects give abstract blobs. It
follows prompts worded like its training captions (see `training/shapes/captions.py`){wordings_followed}; a
sentence built very differently, or naming two shapes, is not understood. {open_size} It exists to test and
demonstrate the application, not as an image model.
"""
    (out / "MODEL_CARD.md").write_text(card)
