"""Prompt wordings kept out of training, to judge whether the demo model follows phrasings it never saw.

Like the held-out scenes of `dataset.split_of`, these live apart from the training grammar in
`captions`: no template there can produce any string these produce (a test enumerates both). Each
held-out wording recombines pieces the widened grammar does teach, which is the generalisation that is
fair to ask of a model trained on captions alone:

- "red circle, blue background": training sees the bare "red circle" (no article), comma-joined
  captions ("blue background, a red circle", "an image of a red circle, blue background", "red circle
  at the top, blue background", "one red circle, blue backdrop") and "red circle; blue background",
  but never a bare shape followed directly by ", <colour> background".
- "one red circle against blue": training sees "one red circle" and "against a blue background /
  backdrop", and a bare background colour after "on" ("on blue"), never "against" a bare colour.
- "blue background with a red circle": training sees "a blue backdrop with a red circle" and "blue
  background, a red circle", never "background with".
- The full-caption wordings add size and position to new sentence shapes in the same way; e.g.
  "small red circle top left, blue background" is held out while training sees "small red circle top
  left on a blue background" and "a small red circle top left, blue backdrop".

`a {colour} {shape} on a {bg} background` is not held out: it is the base grammar's own short form
("{thing} on {a_bg} background") and has been trained on since the short-prompt stage. It is scored
beside the held-out wordings as a seen wording.
Imports `captions` and `scene`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.shapes.captions import fill
from training.shapes.scene import Scene


@dataclass(frozen=True)
class Wording:
    """A named prompt template over the caption slots (see `captions.TEMPLATES`), and whether it states
    size and position ("full") or only shape, colour and background ("short")."""

    name: str
    template: str
    full: bool
    held_out: bool

    def prompt(self, scene: Scene, rng: np.random.Generator) -> str:
        return fill(self.template, scene, rng, with_size=self.full)


# The four example styles (as templates over the vocabulary) and the full-caption wordings.
EVALUATION_WORDINGS: tuple[Wording, ...] = (
    Wording("{colour} {shape}, {bg} background", "{bare}, {bg} background", full=False, held_out=True),
    Wording("one {colour} {shape} against {bg}", "{one} against {bg}", full=False, held_out=True),
    Wording("{bg} background with a {colour} {shape}", "{bg} background with {thing}", full=False, held_out=True),
    Wording("a {colour} {shape} on a {bg} background", "{thing} on {a_bg} background", full=False, held_out=False),
    Wording("full: {bg} background with {thing} {where}", "{bg} background with {thing} {where}",
            full=True, held_out=True),
    Wording("full: {thing} {where} against {bg}", "{thing} {where} against {bg}", full=True, held_out=True),
    Wording("full: {where}, {bare} on {a_bg} background", "{where}, {bare} on {a_bg} background",
            full=True, held_out=True),
    Wording("full: {bare} {name}, {bg} background", "{bare} {name}, {bg} background", full=True, held_out=True),
)
HELD_OUT_WORDINGS: tuple[Wording, ...] = tuple(w for w in EVALUATION_WORDINGS if w.held_out)
