"""The velocity refiner's training: a short run of the real script on a tiny random-weight checkpoint learns
(beats "reuse v" and lowers its loss) and writes what the loader reads; the shipped refiner beats "reuse v" on
freshly drawn states of the shipped demo model."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from modeling.loading import load_checkpoint
from modeling.velocity_refiner import load_refiner
from tests.fixtures.tiny_models import write_model_folder
from training.velocity_refiner import RefinerTraining, StateDistribution, build_teacher, train, validate

PROJECT = Path(__file__).resolve().parents[2]
DEMO = PROJECT / "models" / "checkpoints" / "flowmill-shapes-demo"
SHIPPED = PROJECT / "models" / "velocity_refiners" / "flowmill-shapes-demo-refiner.safetensors"

TINY_RUN = replace(RefinerTraining(), steps=150, batch_size=64, learning_rate=3e-3, warmup_steps=5, hidden_size=32,
                   heads=2, images=48, teacher_states=512, validation_images=24, validation_states=128,
                   validation_every=75)


def test_a_short_run_on_a_tiny_model_learns_and_writes_a_loadable_refiner(tmp_path: Path) -> None:
    checkpoint = write_model_folder(tmp_path / "tiny-demo")
    out = tmp_path / "velocity_refiners" / "tiny-refiner.safetensors"
    report = train(TINY_RUN, checkpoint, out)

    overall = report["validation"]["overall"]
    # The net starts at offset 0, i.e. exactly "reuse v"; training must move it below that on held-out states.
    assert overall["refiner_mse"] < 0.9 * overall["reuse_v_mse"], overall
    log = [json.loads(line) for line in out.with_name("tiny-refiner.training_log.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in log]
    assert len(losses) >= 8 and sum(losses[-3:]) / 3 < 0.9 * sum(losses[:3]) / 3, losses
    assert [row["step"] for row in log if "validation_ema" in row] == [74, 149]

    written = json.loads(out.with_name("tiny-refiner.report.json").read_text())
    assert written["validation"] == report["validation"]
    assert written["parameters"]["refiner"] < written["parameters"]["demo_transformer"]
    assert set(written["validation"]["buckets"]) == {"[0.0, 0.25)", "[0.25, 0.5)", "[0.5, 0.75)", "[0.75, 1.0]"}
    assert sum(bucket["states"] for bucket in written["validation"]["buckets"].values()) == 128
    refiner = load_refiner(out, "cpu")
    assert refiner.latent_channels == 16 and refiner.name == "tiny-refiner"


def test_the_shipped_refiner_beats_reusing_the_velocity_on_fresh_states() -> None:
    """Held-out scenes, a seed the training never used, CFG 4: the refiner's velocity is closer to the model's."""
    model, text_encoder, vae = load_checkpoint(DEMO, device="cpu")
    teacher = build_teacher(model, text_encoder, vae, 32, "eval", seed=987, partial_captions=0.35)
    states = teacher.draw(192, StateDistribution(cfg=(4.0, 4.0), caption_dropout=0.0, max_dt=0.12),
                          torch.Generator().manual_seed(987))
    refiner = load_refiner(SHIPPED, "cpu")
    figures = validate(refiner.net, states)
    assert figures["overall"]["ratio"] < 0.35, figures  # 0.17 on the training report's validation states
    assert all(bucket["refiner_mse"] < bucket["reuse_v_mse"] for bucket in figures["buckets"].values()), figures
