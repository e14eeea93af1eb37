"""`python -m training.shapes`: measure dataset speed and evaluator accuracy (ground truth and degraded).

A report, not a test: the numbers it prints are the ones quoted when the world or the evaluator changes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from training.shapes.dataset import make_dataset
from training.shapes.degrade import degrade
from training.shapes.evaluate import accuracy


def _line(label: str, scores: dict[str, float]) -> str:
    return f"{label:<34}" + "  ".join(f"{name} {value:.4f}" for name, value in scores.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset-size", type=int, default=20_000)
    parser.add_argument("--eval-size", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    make_dataset(args.dataset_size, args.seed)
    print(f"make_dataset({args.dataset_size}): {time.perf_counter() - start:.2f} s")

    images, _, scenes = make_dataset(args.eval_size, args.seed + 1, split=None)
    start = time.perf_counter()
    print(_line("ground truth", accuracy(images, scenes)))
    per_image_ms = (time.perf_counter() - start) / len(images) * 1e3
    print(f"read_scene: {per_image_ms:.2f} ms per image")
    for sigma, shift, noise in ((1.0, 15.0, 6.0), (1.5, 15.0, 6.0), (1.5, 25.0, 10.0), (2.0, 25.0, 12.0)):
        rng = np.random.default_rng(args.seed + 2)
        degraded = np.stack([degrade(x, rng, blur_sigma=sigma, colour_shift=shift, noise_std=noise) for x in images])
        print(_line(f"blur {sigma} shift ±{shift:g} noise {noise:g}", accuracy(degraded, scenes)))


if __name__ == "__main__":
    main()
