"""The demo VAE's training code on a tiny budget: it runs, logs, and reports honestly."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from training.vae import (
    DOWNSAMPLING,
    LATENT_CHANNELS,
    VaeTraining,
    demo_vae_config,
    fit_latent_scale,
    reconstruction_report,
    shape_weights,
    to_model_range,
    to_uint8,
    train,
)


def test_config_maps_64px_images_to_8x8x16_latents() -> None:
    vae = AutoencoderKL(**demo_vae_config())
    with torch.no_grad():
        latents = vae.encode(torch.zeros(1, 3, 64, 64)).latent_dist.mean
    assert latents.shape == (1, LATENT_CHANNELS, 64 // DOWNSAMPLING, 64 // DOWNSAMPLING)


def test_pixel_range_round_trips() -> None:
    images = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8).numpy()
    assert (to_uint8(to_model_range(images)) == images).all()


def test_a_few_steps_train_log_and_report(tmp_path: Path) -> None:
    torch.manual_seed(0)
    vae = AutoencoderKL(**demo_vae_config())
    log = tmp_path / "log.jsonl"
    train(vae, VaeTraining(steps=3, batch_size=4, chunk=16), log)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [record["step"] for record in records] == [0, 1, 2] and all(record["l1"] > 0 for record in records)
    vae.eval()
    shift, scale = fit_latent_scale(vae, seed=1, count=16)
    assert scale > 0 and abs(shift) < 10
    report = reconstruction_report(vae, seed=2, count=16)
    assert set(report["evaluator_accuracy"]) == {"shape", "colour", "background", "size", "position"}
    assert 0 < report["psnr_db"] < 60


def test_shape_pixels_weigh_more_and_weights_average_one() -> None:
    from training.shapes import make_dataset, mask

    images, _, scenes = make_dataset(4, seed=3)
    weights = shape_weights(to_model_range(images), boost=10.0)
    assert torch.allclose(weights.mean(dim=(1, 2, 3)), torch.ones(4))
    for index, scene in enumerate(scenes):
        shape_pixels = torch.from_numpy(mask(scene, 64))
        inside, outside = weights[index, 0][shape_pixels], weights[index, 0][~shape_pixels]
        assert inside.min() > outside.max()
