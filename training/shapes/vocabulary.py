"""The fixed vocabulary and layout of the shapes world: names, RGB values and pixel geometry.

Pure constant tables only. Every other module of the package reads its words and numbers from here,
so a new colour or shape is one edit. Imports nothing from the package.
"""

from __future__ import annotations

# Shapes are drawn upright, each filling (or nearly filling) a square of the scene's extent.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "ring", "cross")
# Shapes outside the base world, for add-ons such as the demo LoRA (training/demo_lora.py): the base
# world's samplers and captions and the evaluator's default reading never use them, so the demo model has
# never seen one. A diamond (a square on its corner) survives the demo VAE (read back 95% after encoding
# and decoding), where a new colour did not: the VAE decodes pink (255, 120, 170), never in its training
# data, as white.
EXTENSION_SHAPES: tuple[str, ...] = ("diamond",)
EXTENDED_SHAPES: tuple[str, ...] = SHAPES + EXTENSION_SHAPES

# Saturated, far-apart colours: the closest pair (orange/yellow) is ~100 apart in RGB and every other pair
# is further, so a VAE's blur and a weak generator's colour drift still leave the nearest name correct.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 130, 15),
    "yellow": (240, 230, 30),
    "green": (40, 170, 60),
    "cyan": (30, 200, 220),
    "blue": (35, 70, 220),
    "purple": (170, 40, 210),
    "white": (245, 245, 245),
    "gray": (128, 128, 128),
    "black": (20, 20, 20),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)

SIZES: tuple[str, ...] = ("small", "large")

# Row-major 3x3 grid; the name is the canonical phrase ("top" is the top-middle cell).
POSITIONS: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip

DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")

# Geometry is defined at a 64 px reference canvas and scaled linearly to any other render size.
REFERENCE_SIZE = 64
# Side of the square each shape fills. 26 vs 18 px: areas differ ~2x, so size survives any blur. Small
# shapes are 18 px rather than 14 because an 8x-downsampling VAE sees a 14 px shape as ~2x2 latent cells
# and turned small rings into discs and small crosses into diamonds (shape read back 87%).
EXTENT_PX: dict[str, float] = {"small": 18.0, "large": 26.0}
# Cell centres along either axis. 16 = half a large extent (13) + the largest jitter (2) + 1 px margin,
# so a large shape in a corner cell stays fully inside; 48 mirrors it.
CELL_CENTRES_PX: tuple[float, float, float] = (16.0, 32.0, 48.0)
MAX_JITTER_PX = 2
# A moving shape shifts this far per frame; MAX_FRAMES keeps a large shape starting in a middle cell
# inside the canvas for the whole clip (32 - 13 - 2 - 2 * 7 = 3 px of margin).
MOTION_STEP_PX = 2
MAX_FRAMES = 8
