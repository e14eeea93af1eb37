"""The demo model's flow training: its caption mix; a two-step run on the shipped VAE and tokenizer writes
components that Flowmill's own loaders read, with a finite loss of the expected size; fine-tuning resumes
from saved weights."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from modeling.conditioning import FluxConditioning
from modeling.loading import load_checkpoint
from training.demo import DEFAULT_SHIFT, assemble
from training.flow_model import FlowTraining, describe, short_prompt_finetuning, train
from training.shapes import Scene, parse_caption, sample_scene

DEMO = Path(__file__).resolve().parents[2] / "models" / "checkpoints" / "flowmill-shapes-demo"


def test_two_training_steps_write_a_checkpoint_the_loaders_read(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    for part in ("vae", "tokenizer"):  # what the earlier stages of training.demo leave in the folder
        shutil.copytree(DEMO / part, out / part)
    report = train(FlowTraining(steps=2, images=64, batch_size=8), DEMO / "vae", DEMO / "tokenizer", out)
    assemble(out)

    losses = [json.loads(line)["loss"] for line in (out / "training_log.jsonl").read_text().splitlines()]
    # At initialisation the prediction is ~0 and the target noise - x0 has variance ~2.
    assert len(losses) == 2 and all(0.5 < loss < 5.0 for loss in losses)
    assert report["parameters"]["transformer"] > 1_000_000

    model, text_encoder, vae = load_checkpoint(out, device="cpu")
    hidden, pooled = text_encoder.encode("a red circle on a blue background")
    velocity = model.velocity(torch.zeros(1, 16, 8, 8), torch.tensor([1.0]), FluxConditioning(hidden, pooled))
    assert velocity.shape == (1, 16, 8, 8) and torch.isfinite(velocity).all()
    assert vae.latent_channels == 16 and model.sampling.shift == DEFAULT_SHIFT


def test_training_captions_leave_out_size_or_position_in_the_configured_share() -> None:
    rng = np.random.default_rng(0)
    scenes = [sample_scene(rng) for _ in range(2000)]
    parsed = [parse_caption(describe(scene, rng, partial_captions=0.35)) for scene in scenes]
    partial = [p for p in parsed if not isinstance(p, Scene)]
    assert 0.3 < len(partial) / len(parsed) < 0.4
    assert all({"shape", "colour", "background"} <= set(p.stated()) for p in partial)
    assert {frozenset({"size", "position"} - set(p.stated())) for p in partial} == {
        frozenset({"size"}), frozenset({"position"}), frozenset({"size", "position"})}
    assert all(isinstance(parse_caption(describe(scene, rng, partial_captions=0.0)), Scene) for scene in scenes[:200])


def test_fine_tuning_starts_from_a_trained_checkpoint(tmp_path: Path) -> None:
    """training.demo's short-prompt stage continues the shipped weights rather than starting afresh: a
    trained model's loss is far below the ~2 of a fresh one."""
    settings = replace(short_prompt_finetuning(seed=0), steps=2, images=64, batch_size=8, warmup_steps=1)
    train(settings, DEMO / "vae", DEMO / "tokenizer", tmp_path, start_from=DEMO)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "training_log.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(loss < 0.5 for loss in losses)
    assert json.loads((tmp_path / "flow_report.json").read_text())["training"]["partial_captions"] == 0.35
    assert "_name_or_path" not in json.loads((tmp_path / "transformer" / "config.json").read_text())


def test_the_widened_grammar_stage_continues_the_weights_and_resumes(tmp_path: Path, monkeypatch) -> None:
    """training.demo's widen stage trains from the folder's own weights, keeps its logs under training/, and a
    rerun skips it (as every stage is skipped once its output exists)."""
    from training import demo as demo_script
    from training import flow_model

    out, logs = tmp_path / "demo", tmp_path / "demo" / "training"
    logs.mkdir(parents=True)
    for part in ("vae", "tokenizer", "transformer", "text_encoder"):
        shutil.copytree(DEMO / part, out / part)
    short = replace(flow_model.widened_grammar_finetuning(seed=0), steps=2, images=64, batch_size=8, warmup_steps=1)
    monkeypatch.setattr(flow_model, "widened_grammar_finetuning", lambda seed: short)
    demo_script.finetune_widened_grammar(out, logs, seed=0)

    report = json.loads((logs / "widen_report.json").read_text())
    assert report["training"]["widened_grammar"] and report["training"]["open_size_is_large"]
    assert report["started_from"] == str(out)
    losses = [json.loads(line)["loss"] for line in (logs / "widen_training_log.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(loss < 0.5 for loss in losses)  # a trained model's loss, not a fresh one's ~2
    assert not (out / "training_log.jsonl").exists() and not (out / "flow_report.json").exists()
    written = (out / "transformer" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    demo_script.finetune_widened_grammar(out, logs, seed=0)
    assert (out / "transformer" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == written
