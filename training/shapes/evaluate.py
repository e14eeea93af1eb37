"""The evaluator: what a shapes-world image shows, read from its pixels alone, and a caption scored against it.

Steps of `read_scene`, each chosen to survive blur, noise and colour drift from a weak generator:
background = robust mean of the border; foreground = the largest blob far from it; colour = the palette
colour whose mix with the background best explains the blob's core (blur mixes edges and thin strokes
with the background, so a plain nearest-colour would drift); shape and size = the procedural template
(from `geometry`, the renderer's own outlines), placed at the blob's centroid and blurred by a few widths,
that best fits the blob's coverage map in least squares; position = the fitted centre's nearest grid cell.
Never sees a `Scene`. Imports `geometry`, `parse`, `render`, `scene`, `vocabulary`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from training.shapes.geometry import centroid_drop, rasterize
from training.shapes.parse import parse_caption
from training.shapes.render import cell_centre
from training.shapes.scene import ATTRIBUTES, Scene
from training.shapes.vocabulary import (
    EXTENT_PX,
    MOTION_STEP_PX,
    PALETTE,
    POSITIONS,
    REFERENCE_SIZE,
    SHAPES,
    SIZES,
)

_PALETTE_RGB = np.array(list(PALETTE.values()), dtype=np.float32)
_NAMES = tuple(PALETTE)
# A pixel this far (RGB distance) from the background is a foreground candidate: well above noise
# (sigma 8 per channel gives ~14) and well below the closest palette pair (~100).
MIN_CONTRAST = 40.0
# Blur leaves thin strokes at ~70% of their colour; explaining the core as at least this much of a palette
# colour (the rest background) tolerates that, while still telling gray from white on black (gray = 52% white).
MIN_CORE_MIX = 0.6
# Weight of the prior that the core is mostly shape colour (see `_colour`); 0.15-0.25 measured equally well.
MIX_PENALTY = 0.2
BORDER_PX = 2
# Template blurs tried (reference px): sharp renders, and the softness of a VAE or a weak generator.
TEMPLATE_BLURS: tuple[float, ...] = (0.0, 0.8, 1.4, 2.0)
# How far beyond the thresholded blob a blur spreads the shape's coverage (about 2 sigma of the widest).
BLUR_REACH_PX = 4


@dataclass(frozen=True)
class Reading:
    """What an image shows; attributes are None when no shape was found. `confidence` is the soft IoU in
    [0, 1] between the shape's coverage map and the best template (None without a shape)."""

    shape: str | None
    colour: str | None
    background: str | None
    size: str | None
    position: str | None
    confidence: float | None


def _nearest_colour(rgb: np.ndarray) -> str:
    return _NAMES[int(np.argmin(np.linalg.norm(_PALETTE_RGB - rgb, axis=1)))]


def _background(image: np.ndarray) -> np.ndarray:
    # A large shape in a corner covers up to ~1/5 of the border: the median ignores it, then a mean over the
    # pixels near the median averages the noise away.
    border = np.concatenate(
        [image[:BORDER_PX].reshape(-1, 3), image[-BORDER_PX:].reshape(-1, 3),
         image[:, :BORDER_PX].reshape(-1, 3), image[:, -BORDER_PX:].reshape(-1, 3)]
    )  # fmt: skip
    median = np.median(border, axis=0)
    close = border[np.linalg.norm(border - median, axis=1) < MIN_CONTRAST]
    return close.mean(axis=0) if len(close) else median


def _largest_blob(mask: np.ndarray) -> np.ndarray | None:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count < 2:
        return None
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _colour(core_rgb: np.ndarray, background: np.ndarray, exclude: str) -> tuple[str, np.ndarray]:
    """The palette colour that best explains `core_rgb` as a mix of it with the background, and its RGB.

    Cost = distance from the core to the nearest mix bg + a (c - bg) with a in [MIN_CORE_MIX, 1], plus
    MIX_PENALTY x the colour distance the mix leaves out, (1 - a) |c - bg|. Without the penalty a far colour
    mixed 60% with the background (yellow on red) could out-fit the nearer true colour (orange) once the
    image drifts a little.
    """
    best, best_cost = exclude, np.inf
    for name, rgb in zip(_NAMES, _PALETTE_RGB, strict=True):
        if name == exclude:
            continue
        direction = rgb - background
        length2 = max(float(direction @ direction), 1e-6)
        mix = float(np.clip((core_rgb - background) @ direction / length2, MIN_CORE_MIX, 1.0))
        residual = float(np.linalg.norm(core_rgb - background - mix * direction))
        cost = residual + MIX_PENALTY * (1.0 - mix) * np.sqrt(length2)
        if cost < best_cost:
            best, best_cost = name, cost
    return best, np.array(PALETTE[best], dtype=np.float32)


def _foreground(image: np.ndarray, background: np.ndarray, background_name: str) -> tuple[np.ndarray, str] | None:
    """The shape's coverage map (HxW in [0, 1], zero outside its blob) and colour name, or None when
    nothing stands out from the background."""
    distance = np.linalg.norm(image - background, axis=2)
    blob = _largest_blob(distance > MIN_CONTRAST)
    if blob is None:
        return None
    blob_distance = distance[blob]
    # The core is the blob's most saturated part: the pixels blur has mixed least with the background.
    core = blob & (distance >= 0.8 * np.percentile(blob_distance, 90))
    colour, rgb = _colour(np.median(image[core], axis=0), background, background_name)
    # Coverage = fraction of the shape colour per pixel, projected on the background->colour line (which
    # drops the noise across it). Only the blob and a blur's reach around it count, so noise elsewhere
    # cannot pull the centroid or the template fit.
    direction = rgb - background
    coverage = np.clip((image - background) @ direction / max(float(direction @ direction), 1e-6), 0.0, 1.0)
    near = cv2.dilate(blob.astype(np.uint8), np.ones((2 * BLUR_REACH_PX + 1,) * 2, np.uint8)).astype(bool)
    return np.where(near, coverage, 0.0).astype(np.float32), colour


def _centroid(weights: np.ndarray) -> np.ndarray:
    ys, xs = np.indices(weights.shape)
    total = max(float(weights.sum()), 1e-6)
    return np.array([(xs * weights).sum() / total + 0.5, (ys * weights).sum() / total + 0.5])


def _window(centroid: np.ndarray, height: int, width: int, scale: float) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) around the centroid holding any template placed there, blurred by any of TEMPLATE_BLURS.

    Coverage outside it adds the same error to every template, so fitting inside it alone picks the same
    template while blurring and comparing fewer pixels.
    """
    # Half the largest extent, the largest centroid offset (a triangle's, a third of that), three sigmas.
    reach = (max(EXTENT_PX.values()) * (0.5 + 1 / 6) + 3 * max(TEMPLATE_BLURS) + 2) * scale
    x, y = centroid
    return (
        max(int(x - reach), 0),
        max(int(y - reach), 0),
        min(int(x + reach) + 1, width),
        min(int(y + reach) + 1, height),
    )


def _template_error(template: np.ndarray, coverage: np.ndarray, sigma: float) -> tuple[float, np.ndarray]:
    blurred = template.astype(np.float32)
    if sigma > 0:
        blurred = cv2.GaussianBlur(blurred, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    return float(np.square(blurred - coverage).sum()), blurred


def _fit_template(coverage: np.ndarray, shapes: tuple[str, ...] = SHAPES) -> tuple[str, str, np.ndarray, float]:
    """Best (shape, size) template for the coverage map, its centre (image pixels), and their soft IoU.

    Each template is placed with its centroid on the coverage's (a blur moves edges, not centroids) and
    compared blurred by each of `TEMPLATE_BLURS`, so a blurred large star is matched by a blurred large
    star rather than by a sharp small circle of similar area.
    """
    scale = coverage.shape[1] / REFERENCE_SIZE
    centroid = _centroid(coverage)
    x0, y0, x1, y1 = _window(centroid, *coverage.shape, scale)
    window = coverage[y0:y1, x0:x1]
    local = centroid - (x0, y0)
    best = ("", "", centroid, np.inf, 0.0)
    for size in SIZES:
        half_extent = EXTENT_PX[size] * scale / 2
        for shape in shapes:
            # Not every outline is centred on its centroid (a triangle's sits low).
            centre = local - (0.0, centroid_drop(shape) * half_extent)
            template = rasterize(shape, (float(centre[0]), float(centre[1])), half_extent, *window.shape)
            for sigma in TEMPLATE_BLURS:
                error, blurred = _template_error(template, window, sigma * scale)
                if error < best[3]:
                    overlap = np.minimum(blurred, window).sum() / max(float(np.maximum(blurred, window).sum()), 1e-6)
                    best = (shape, size, centre + (x0, y0), error, float(overlap))
    return best[0], best[1], best[2], best[4]


def _position(centre: np.ndarray, size: int) -> str:
    distances = [np.hypot(*(centre - np.array(cell_centre(p, size)))) for p in POSITIONS]
    return POSITIONS[int(np.argmin(distances))]


def _separate(image: np.ndarray) -> tuple[str, tuple[np.ndarray, str] | None]:
    """The background's colour name, and the shape's coverage map and colour name (None if no shape)."""
    pixels = image.astype(np.float32)
    background = _background(pixels)
    background_name = _nearest_colour(background)
    return background_name, _foreground(pixels, background, background_name)


def read_scene(image: np.ndarray, shapes: tuple[str, ...] = SHAPES) -> Reading:
    """What the uint8 HxWx3 RGB `image` shows, from pixels alone. The shape is one of `shapes`: the base
    world's unless asked (`vocabulary.EXTENDED_SHAPES` also recognises a diamond)."""
    background_name, found = _separate(image)
    if found is None:
        return Reading(None, None, background_name, None, None, None)
    coverage, colour = found
    shape, size, centre, iou = _fit_template(coverage, shapes)
    return Reading(shape, colour, background_name, size, _position(centre, image.shape[1]), float(iou))


def shape_mask(image: np.ndarray) -> np.ndarray:
    """Where the uint8 HxWx3 RGB `image` shows its shape: a boolean HxW map (all False when none stands out)."""
    _, found = _separate(image)
    if found is None:
        return np.zeros(image.shape[:2], dtype=bool)
    return found[0] >= 0.5


def read_direction(frames: np.ndarray) -> str | None:
    """Which way the shape moves between the first and last of uint8 TxHxWx3 `frames` (None if it does not)."""
    centres = []
    for image in (frames[0], frames[-1]):
        _, found = _separate(image)
        if found is None:
            return None
        centres.append(_centroid(found[0]))
    dx, dy = centres[1] - centres[0]
    # Less than half a frame's step overall is jitter of the estimate, not motion.
    if max(abs(dx), abs(dy)) < MOTION_STEP_PX * frames.shape[2] / REFERENCE_SIZE / 2:
        return None
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def score(image: np.ndarray, caption: str) -> dict[str, bool]:
    """For each scene attribute the caption states, whether the image shows it."""
    parsed = parse_caption(caption)
    stated = {name: getattr(parsed, name) for name in ATTRIBUTES if getattr(parsed, name) is not None}
    reading = read_scene(image)
    return {name: getattr(reading, name) == value for name, value in stated.items()}


def accuracy(images: np.ndarray, scenes: list[Scene]) -> dict[str, float]:
    """Fraction of images whose reading matches the scene, per attribute."""
    return reading_accuracy([read_scene(image) for image in images], scenes)


def reading_accuracy(readings: list[Reading], scenes: list[Scene]) -> dict[str, float]:
    """`accuracy` for images already read, so a caller that needs the readings too reads each image once."""
    hits = dict.fromkeys(ATTRIBUTES, 0)
    for reading, scene in zip(readings, scenes, strict=True):
        for name in ATTRIBUTES:
            hits[name] += getattr(reading, name) == getattr(scene, name)
    return {name: count / max(len(scenes), 1) for name, count in hits.items()}
