"""Seeded datasets of (image, caption, scene) and the train/eval split rule.

The split holds out whole attribute combinations: a scene belongs to "eval" when a stable hash of its five
attributes falls in the held-out fraction. An eval caption therefore never describes a scene the model was
trained on (whatever the seed, jitter or wording), and the split does not depend on Python's salted `hash`.
Imports `captions`, `render`, `scene`, `vocabulary`.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np

from training.shapes.captions import caption
from training.shapes.render import render
from training.shapes.scene import ATTRIBUTES, Scene, sample_scene
from training.shapes.vocabulary import REFERENCE_SIZE

Split = Literal["train", "eval"]
# 10% of the ~9,700 attribute combinations (~970) are held out for evaluation.
EVAL_FRACTION = 0.1


def split_of(scene: Scene) -> Split:
    """Which split `scene` belongs to; fixed forever for a given combination of attributes."""
    key = "|".join(getattr(scene, name) for name in ATTRIBUTES).encode()
    bucket = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2**64
    return "eval" if bucket < EVAL_FRACTION else "train"


def make_dataset(
    n: int, seed: int, split: Split | None = "train", size: int = REFERENCE_SIZE
) -> tuple[np.ndarray, list[str], list[Scene]]:
    """`n` images (uint8 NxHxWx3), their captions and scenes; identical for the same arguments.

    Scenes are drawn uniformly and redrawn until they fall in `split` (None accepts every scene).
    """
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    captions: list[str] = []
    scenes: list[Scene] = []
    for i in range(n):
        scene = sample_scene(rng)
        while split is not None and split_of(scene) != split:
            scene = sample_scene(rng)
        images[i] = render(scene, size)
        captions.append(caption(scene, rng))
        scenes.append(scene)
    return images, captions, scenes
