"""Pixels for a scene: the RGB render, its binary mask and edge map (control images), and motion clips.

Placement is one rule, `placement`: the cell centre plus the scene's jitter, scaled from the 64 px
reference canvas to the requested size. Imports `geometry`, `scene` and `vocabulary`.
"""

from __future__ import annotations

import numpy as np

from training.shapes.geometry import rasterize
from training.shapes.scene import MotionScene, Scene
from training.shapes.vocabulary import CELL_CENTRES_PX, EXTENT_PX, MOTION_STEP_PX, PALETTE, POSITIONS, REFERENCE_SIZE

_DIRECTION_VECTORS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


def cell_centre(position: str, size: int = REFERENCE_SIZE) -> tuple[float, float]:
    """The (x, y) pixel centre of a grid cell on a `size` canvas."""
    row, column = divmod(POSITIONS.index(position), 3)
    scale = size / REFERENCE_SIZE
    return CELL_CENTRES_PX[column] * scale, CELL_CENTRES_PX[row] * scale


def placement(
    scene: Scene, size: int = REFERENCE_SIZE, shift_px: tuple[int, int] = (0, 0)
) -> tuple[tuple[float, float], float]:
    """Centre (x, y) and half-extent, in pixels of a `size` canvas, of the scene's shape.

    `shift_px` is an extra offset at reference scale (used by motion frames).
    """
    scale = size / REFERENCE_SIZE
    cx, cy = cell_centre(scene.position, size)
    dx, dy = scene.jitter[0] + shift_px[0], scene.jitter[1] + shift_px[1]
    return (cx + dx * scale, cy + dy * scale), EXTENT_PX[scene.size] * scale / 2


def _mask_at(scene: Scene, size: int, shift_px: tuple[int, int]) -> np.ndarray:
    centre, half_extent = placement(scene, size, shift_px)
    return rasterize(scene.shape, centre, half_extent, size, size)


def _paint(scene: Scene, shape_mask: np.ndarray) -> np.ndarray:
    image = np.empty((*shape_mask.shape, 3), dtype=np.uint8)
    image[...] = PALETTE[scene.background]
    image[shape_mask] = PALETTE[scene.colour]
    return image


def mask(scene: Scene, size: int = REFERENCE_SIZE) -> np.ndarray:
    """Boolean HxW mask of the shape: exactly the pixels `render` paints in the shape's colour."""
    return _mask_at(scene, size, (0, 0))


def edges(scene: Scene, size: int = REFERENCE_SIZE) -> np.ndarray:
    """Boolean HxW edge map: the mask's inner boundary (mask pixels with a 4-neighbour outside it).

    Derived from the mask rather than cv2.Canny of the render so it is exact for every colour pair,
    including low-contrast ones, and independent of thresholds.
    """
    shape_mask = mask(scene, size)
    padded = np.pad(shape_mask, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return shape_mask & ~interior


def render(scene: Scene, size: int = REFERENCE_SIZE) -> np.ndarray:
    """The scene as a crisp uint8 HxWx3 RGB image (no anti-aliasing)."""
    return _paint(scene, mask(scene, size))


def frame_shift(motion: MotionScene, frame: int) -> tuple[int, int]:
    """The shape's offset from its start at `frame`, in reference pixels."""
    vx, vy = _DIRECTION_VECTORS[motion.direction]
    return vx * MOTION_STEP_PX * frame, vy * MOTION_STEP_PX * frame


def render_frames(motion: MotionScene, size: int = REFERENCE_SIZE) -> np.ndarray:
    """The clip as uint8 TxHxWx3: frame t shows the shape moved by `frame_shift(motion, t)`."""
    return np.stack(
        [_paint(motion.scene, _mask_at(motion.scene, size, frame_shift(motion, t))) for t in range(motion.frames)]
    )
