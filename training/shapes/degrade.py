"""Seeded degradations that imitate a weak generator's output: blur, a colour drift and noise.

Used to check that the evaluator degrades gracefully; imports nothing from the package.
"""

from __future__ import annotations

import cv2
import numpy as np


def degrade(
    image: np.ndarray,
    rng: np.random.Generator,
    blur_sigma: float = 1.25,
    colour_shift: float = 15.0,
    noise_std: float = 6.0,
) -> np.ndarray:
    """`image` (uint8 HxWx3) blurred by a Gaussian of `blur_sigma` px, shifted by a uniform per-channel offset
    in ±`colour_shift`, plus Gaussian noise of `noise_std`, clipped back to uint8."""
    out = image.astype(np.float32)
    if blur_sigma > 0:
        out = cv2.GaussianBlur(out, (0, 0), blur_sigma, borderType=cv2.BORDER_REFLECT)
    out += rng.uniform(-colour_shift, colour_shift, size=3).astype(np.float32)
    out += rng.normal(0.0, noise_std, size=out.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
