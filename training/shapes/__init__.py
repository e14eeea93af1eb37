"""The shapes world: a seeded, procedural text-to-image domain for Flowmill's demo rectified-flow model,
and an evaluator that scores any image against any caption from its pixels alone.

One job per module:
    vocabulary  the words, palette (RGB) and pixel geometry of the world
    scene       Scene / MotionScene records and their seeded samplers
    geometry    shape outlines and their rasterisation
    render      render, mask, edges (control images), render_frames (motion clips)
    captions    caption / motion_caption: varied wording over fixed phrase tables
    held_out_wordings  prompt wordings kept out of training, for evaluation only
    parse       parse_caption: words back to attributes
    dataset     make_dataset and the held-out split rule
    degrade     blur / drift / noise that imitate a weak generator
    evaluate    read_scene, read_direction, score, accuracy

This package imports numpy and OpenCV only; nothing from the rest of Flowmill.
"""

from __future__ import annotations

from training.shapes.captions import caption, motion_caption
from training.shapes.dataset import EVAL_FRACTION, Split, make_dataset, split_of
from training.shapes.degrade import degrade
from training.shapes.evaluate import Reading, accuracy, read_direction, read_scene, reading_accuracy, score
from training.shapes.parse import PartialScene, parse_caption
from training.shapes.render import edges, mask, placement, render, render_frames
from training.shapes.scene import ATTRIBUTES, MotionScene, Scene, allowed_directions, sample_motion_scene, sample_scene
from training.shapes.vocabulary import COLOURS, DIRECTIONS, PALETTE, POSITIONS, SHAPES, SIZES

__all__ = [
    "ATTRIBUTES",
    "COLOURS",
    "DIRECTIONS",
    "EVAL_FRACTION",
    "PALETTE",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "MotionScene",
    "PartialScene",
    "Reading",
    "Scene",
    "Split",
    "accuracy",
    "allowed_directions",
    "caption",
    "degrade",
    "edges",
    "make_dataset",
    "mask",
    "motion_caption",
    "parse_caption",
    "placement",
    "read_direction",
    "read_scene",
    "reading_accuracy",
    "render",
    "render_frames",
    "sample_motion_scene",
    "sample_scene",
    "score",
    "split_of",
]
