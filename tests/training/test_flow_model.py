"""The demo model's flow training: a two-step run on the shipped VAE and tokenizer writes components
that Flowmill's own loaders read, and the loss it logs is finite and of the expected size."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from modeling.loading import load_checkpoint
from training.demo import DEFAULT_SHIFT, assemble
from training.flow_model import FlowTraining, train

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
    velocity = model.velocity(torch.zeros(1, 16, 8, 8), torch.tensor([1.0]), hidden, pooled)
    assert velocity.shape == (1, 16, 8, 8) and torch.isfinite(velocity).all()
    assert vae.latent_channels == 16 and model.sampling.shift == DEFAULT_SHIFT
