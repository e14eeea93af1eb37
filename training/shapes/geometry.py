"""Shape outlines as point-inside tests, and their rasterisation into a boolean pixel mask.

Shared by the renderer (to draw) and the evaluator (to build templates), so both always agree on what
a "star" is. Pure numpy; imports nothing from the package.
"""

from __future__ import annotations

import math

import numpy as np

# Ring hole and cross arm widths, as fractions of the half-extent. Wide enough that a small (12 px) shape
# keeps a 3.5 px stroke and a 7 px hole, which survive a 1.5 px Gaussian blur thresholded at half contrast.
RING_INNER = 0.5
CROSS_HALF_WIDTH = 0.34
STAR_INNER = 0.5  # inner-vertex radius over tip radius; fatter than a classic star so small ones stay star-like
STAR_POINTS = 5
# The tip radius that makes the star exactly as wide as its extent (tips at +-72 degrees set the width).
_STAR_RADIUS = 1.0 / math.sin(2 * math.pi / STAR_POINTS)
# Moving the star's centre down this far centres its bounding box (the top tip reaches further than the legs).
_STAR_DROP = _STAR_RADIUS * (1.0 - math.cos(math.pi / STAR_POINTS)) / 2


def _star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Fold every point into the half-sector between an outer tip (angle 0) and the next inner vertex,
    # then test which side of that edge it lies on.
    sector = 2 * math.pi / STAR_POINTS
    u, v = u / _STAR_RADIUS, (v - _STAR_DROP) / _STAR_RADIUS
    rho = np.hypot(u, v)
    angle = np.arctan2(u, -v)  # 0 points straight up, so the star stands on two legs
    folded = np.abs((angle + sector / 2) % sector - sector / 2)
    x, y = rho * np.cos(folded), rho * np.sin(folded)
    inner_x, inner_y = STAR_INNER * math.cos(sector / 2), STAR_INNER * math.sin(sector / 2)
    # Cross product of (inner - tip) with (point - tip); the origin gives +inner_y, so inside is >= 0.
    return (inner_x - 1.0) * y - inner_y * (x - 1.0) >= 0


def inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether points (u right, v down, in units of the half-extent, origin at the centre) are inside."""
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 1.0
    if shape == "triangle":  # apex up, base on the bottom edge of the extent
        return (v <= 1.0) & (np.abs(u) <= (v + 1.0) / 2.0)
    if shape == "star":
        return _star(u, v)
    if shape == "ring":
        rho2 = u * u + v * v
        return (rho2 <= 1.0) & (rho2 >= RING_INNER**2)
    if shape == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= CROSS_HALF_WIDTH) & (av <= 1.0)) | ((av <= CROSS_HALF_WIDTH) & (au <= 1.0))
    if shape == "diamond":  # an extension shape (vocabulary.EXTENSION_SHAPES): a square on its corner
        return np.abs(u) + np.abs(v) <= 1.0
    raise ValueError(f"unknown shape {shape!r}")


def centroid_drop(shape: str) -> float:
    """How far below its centre (in half-extents) the shape's area centroid lies; the others are symmetric."""
    if shape == "triangle":  # a triangle's centroid sits a third of the way up from its base
        return 1.0 / 3.0
    if shape == "star":  # the star is symmetric about its own centre, which was dropped to centre its box
        return _STAR_DROP
    return 0.0


def rasterize(shape: str, centre: tuple[float, float], half_extent: float, height: int, width: int) -> np.ndarray:
    """Boolean HxW mask of `shape` centred at `centre` (x, y in pixels), sampled at pixel centres.

    No anti-aliasing: a pixel is in the shape exactly when its centre is. Only the shape's bounding
    window is evaluated, which keeps a 64 px render to a few tens of microseconds.
    """
    cx, cy = centre
    mask = np.zeros((height, width), dtype=bool)
    x0, x1 = max(int(math.floor(cx - half_extent)) - 1, 0), min(int(math.ceil(cx + half_extent)) + 1, width)
    y0, y1 = max(int(math.floor(cy - half_extent)) - 1, 0), min(int(math.ceil(cy + half_extent)) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return mask
    u = (np.arange(x0, x1, dtype=np.float64) + 0.5 - cx) / half_extent
    v = (np.arange(y0, y1, dtype=np.float64) + 0.5 - cy) / half_extent
    mask[y0:y1, x0:x1] = inside(shape, u[None, :], v[:, None])
    return mask
