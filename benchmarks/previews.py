"""Latent preview colours on the shipped demo model: how far a live preview is from the image it stands for.

The sampler nodes show each step's x0 prediction projected to RGB by the VAE's `latent_preview.json`
(`modeling/latent_preview.py`); at the last step that prediction is the final latent, so its preview
should look like the decoded image. For captions of evaluation-split scenes, a third of them moved
onto a white background (20 euler steps at the recommended CFG, through `training.evaluate_demo`),
every final latent is previewed and compared with its decoded image averaged down to the latent's
8x8 grid: mean absolute error in 0-255 levels over all pixels, over the background pixels of
white-background images, and the share of images whose shape and background hues the preview gets
within 30 degrees. Three projections are compared: the shipped
map, the least-squares linear map Flowmill shipped before (refitted here on the same kind of data,
so no old file is needed), and the generic fallback for unknown VAEs.

Run: `python benchmarks/previews.py [--images 60]`.
"""

from __future__ import annotations

import argparse
import colorsys
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from modeling.latent_preview import LatentPreview  # noqa: E402
from modeling.loading import load_checkpoint  # noqa: E402
from training.evaluate_demo import EvaluationSettings, decode, generate_latents, recommended_cfg  # noqa: E402
from training.flow_model import encode_images  # noqa: E402
from training.shapes import Scene, caption, make_dataset  # noqa: E402

CHECKPOINT = PROJECT / "models" / "checkpoints" / "flowmill-shapes-demo"
SEED = 20261208


def pooled(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, H, W, 3] -> float [N, size, size, 3] block means, as a preview pixel covers a block."""
    pixels = torch.from_numpy(images).float().permute(0, 3, 1, 2)
    return F.adaptive_avg_pool2d(pixels, size).permute(0, 2, 3, 1).numpy()


def hue(rgb: np.ndarray) -> float:
    return colorsys.rgb_to_hsv(*(rgb / 255))[0] * 360


def hue_distance(a: np.ndarray, b: np.ndarray) -> float:
    difference = abs(hue(a) - hue(b)) % 360
    return min(difference, 360 - difference)


def regions(target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Background and shape cells of a decoded image on the latent grid: the background is its median
    colour (it covers 85-95% of the image); cells near it are background, cells far from it shape."""
    distance = np.abs(target - np.median(target.reshape(-1, 3), axis=0)).max(axis=-1)
    return distance < 20, distance > 80


def hues_agree(preview: np.ndarray, target: np.ndarray) -> bool:
    """The preview's mean colour over the shape's cells and over the background's matches the decoded image's
    in hue (within 30 degrees) wherever the decoded colour is saturated enough to have a hue."""
    for cells in regions(target):
        if not cells.any():
            continue
        want, got = target[cells].mean(axis=0), preview[cells].mean(axis=0)
        saturation = colorsys.rgb_to_hsv(*(want / 255))[1]
        if saturation > 0.3 and hue_distance(want, got) > 30:
            return False
    return True


def least_squares_map(vae, images: np.ndarray) -> LatentPreview:
    """The projection Flowmill shipped before: least squares from encoded dataset images to the images."""
    return LatentPreview.fit(encode_images(vae, images), torch.from_numpy(images).float() / 255)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=60, help="captions to generate and preview")
    args = parser.parse_args(argv)

    model, text_encoder, vae = load_checkpoint(CHECKPOINT, device="cpu")
    _, _, scenes = make_dataset(args.images, seed=SEED, split="eval")
    # A third of the scenes on white, where the old projection was furthest off (it previewed white as pink).
    scenes = [Scene(s.shape, s.colour if s.colour != "white" else "black", "white", s.size, s.position, s.jitter)
              if index % 3 == 0 else s for index, s in enumerate(scenes)]
    rng = np.random.default_rng(SEED)
    captions = [caption(scene, rng) for scene in scenes]
    started = time.perf_counter()
    latents = generate_latents(model, text_encoder, captions, list(range(SEED, SEED + len(scenes))),
                               EvaluationSettings(), recommended_cfg(CHECKPOINT))
    targets = pooled(decode(vae, latents), latents.shape[-1])
    print(f"{len(scenes)} captions, 20 euler steps ({time.perf_counter() - started:.0f} s); "
          "preview of the final latent against the decoded image on the 8x8 latent grid")

    fit_images, _, _ = make_dataset(1024, seed=SEED + 1, split=None)
    projections = {"shipped": vae.latent_preview, "least-squares linear (before)": least_squares_map(vae, fit_images),
                   "generic fallback": LatentPreview.generic(vae.latent_channels)}
    white = [index for index, scene in enumerate(scenes) if scene.background == "white"]
    print(f"{'projection':<32} {'MAE all':>8} {'MAE white bg':>13} {'white bg RGB':>16} {'hues right':>11}")
    for name, projection in projections.items():
        if projection is None:
            print(f"{name:<32} (the checkpoint ships no latent_preview.json)")
            continue
        previews = np.stack([projection.to_rgb(latent).astype(np.float32) for latent in latents])
        error = np.abs(previews - targets)
        background = [regions(targets[i])[0] for i in white]
        white_error = np.mean([error[i][cells].mean() for i, cells in zip(white, background, strict=True)])
        white_rgb = np.mean([previews[i][cells].mean(axis=0) for i, cells in zip(white, background, strict=True)],
                            axis=0)
        hues = np.mean([hues_agree(previews[i], targets[i]) for i in range(len(scenes))])
        print(f"{name:<32} {error.mean():8.1f} {white_error:13.1f} {str(white_rgb.round().astype(int).tolist()):>16} "
              f"{hues:11.0%}")
    print("(MAE in 0-255 levels; a white background decodes to about [243, 242, 243])")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
