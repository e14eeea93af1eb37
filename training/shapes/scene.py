"""What a shapes-world image shows: the `Scene` and `MotionScene` records and their seeded samplers.

A scene is pure data (names from `vocabulary`), validated on construction; drawing lives in `render`,
words in `captions`. Imports only `vocabulary`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from training.shapes.vocabulary import (
    COLOURS,
    DIRECTIONS,
    EXTENDED_SHAPES,
    MAX_FRAMES,
    MAX_JITTER_PX,
    POSITIONS,
    SHAPES,
    SIZES,
)

ATTRIBUTES: tuple[str, ...] = ("shape", "colour", "background", "size", "position")

# Moving towards the edge a start cell already touches would leave the canvas.
_EDGE_OF_DIRECTION: dict[str, str] = {"left": "left", "right": "right", "up": "top", "down": "bottom"}


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


@dataclass(frozen=True)
class Scene:
    """One shape on a plain background.

    `jitter` is the shape's pixel offset from its cell centre at the 64 px reference size. It is a
    rendering nuisance the caption never mentions, so it takes no part in equality or hashing: two scenes
    compare equal exactly when their captions describe the same thing.
    """

    shape: str
    colour: str
    background: str
    size: str
    position: str
    jitter: tuple[int, int] = field(default=(0, 0), compare=False)
    # The shape names a scene may use; `ExtendedScene` widens them.
    allowed_shapes: ClassVar[tuple[str, ...]] = SHAPES

    def __post_init__(self) -> None:
        _check("shape", self.shape, self.allowed_shapes)
        _check("colour", self.colour, COLOURS)
        _check("background", self.background, COLOURS)
        _check("size", self.size, SIZES)
        _check("position", self.position, POSITIONS)
        if self.colour == self.background:
            raise ValueError(f"colour and background must differ; both are {self.colour!r}")
        if len(self.jitter) != 2 or any(abs(int(j)) > MAX_JITTER_PX for j in self.jitter):
            raise ValueError(f"jitter must be two ints within ±{MAX_JITTER_PX} px; got {self.jitter!r}")


@dataclass(frozen=True)
class ExtendedScene(Scene):
    """A scene that may also show the shapes of `vocabulary.EXTENSION_SHAPES` (a diamond), which the base
    world never draws; for add-ons trained on top of the demo model (training/demo_lora.py). Otherwise a
    `Scene`: it renders, captions and splits the same way."""

    allowed_shapes: ClassVar[tuple[str, ...]] = EXTENDED_SHAPES


def allowed_directions(position: str) -> tuple[str, ...]:
    """The directions a shape starting at `position` can move in without leaving the canvas."""
    return tuple(d for d in DIRECTIONS if _EDGE_OF_DIRECTION[d] not in position.split())


@dataclass(frozen=True)
class MotionScene:
    """A scene whose shape slides `MOTION_STEP_PX` (reference pixels) per frame in `direction`.

    `scene.position` is where the shape starts. Frame 0 is exactly `render(scene)`.
    """

    scene: Scene
    direction: str
    frames: int = MAX_FRAMES

    def __post_init__(self) -> None:
        _check("direction", self.direction, DIRECTIONS)
        if self.direction not in allowed_directions(self.scene.position):
            raise ValueError(
                f"a shape starting at {self.scene.position!r} cannot move {self.direction} and stay inside;"
                f" allowed: {', '.join(allowed_directions(self.scene.position))}"
            )
        if not 1 <= self.frames <= MAX_FRAMES:
            raise ValueError(f"frames must be in 1..{MAX_FRAMES}; got {self.frames}")


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def sample_scene(rng: np.random.Generator) -> Scene:
    """A uniformly random scene (background uniform over the colours other than the shape's)."""
    colour = _pick(rng, COLOURS)
    background = _pick(rng, tuple(c for c in COLOURS if c != colour))
    jitter = rng.integers(-MAX_JITTER_PX, MAX_JITTER_PX + 1, size=2)
    return Scene(
        shape=_pick(rng, SHAPES),
        colour=colour,
        background=background,
        size=_pick(rng, SIZES),
        position=_pick(rng, POSITIONS),
        jitter=(int(jitter[0]), int(jitter[1])),
    )


def sample_motion_scene(rng: np.random.Generator, frames: int = MAX_FRAMES) -> MotionScene:
    """A random scene plus a random direction among those that keep the shape inside."""
    scene = sample_scene(rng)
    return MotionScene(scene=scene, direction=_pick(rng, allowed_directions(scene.position)), frames=frames)
