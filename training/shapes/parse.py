"""Reading attributes back out of a caption: `parse_caption` and the `PartialScene` it returns when a
caption does not pin down a whole scene.

It understands every caption `captions` generates (using the same phrase tables) and is forgiving of
hand-written prompts: case, punctuation, hyphens and word order do not matter, and missing attributes stay
None. Imports `captions`, `scene` and `vocabulary`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from training.shapes.captions import COLOUR_WORDS, DIRECTION_PHRASES, MOTION_VERBS, SHAPE_WORDS, SIZE_WORDS
from training.shapes.scene import ATTRIBUTES, Scene
from training.shapes.vocabulary import COLOURS, SHAPES


@dataclass(frozen=True)
class PartialScene:
    """The attributes a caption states; None where it is silent. `direction` is set for motion captions."""

    shape: str | None = None
    colour: str | None = None
    background: str | None = None
    size: str | None = None
    position: str | None = None
    direction: str | None = None

    def stated(self) -> dict[str, str]:
        """The attributes the caption names, as {attribute: value}."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def scene(self) -> Scene | None:
        """The full `Scene` when all five scene attributes are stated (direction aside) and the shape's colour
        differs from the background's, else None."""
        values = {name: getattr(self, name) for name in ATTRIBUTES}
        if None in values.values() or self.colour == self.background:
            return None
        return Scene(**values)


def _lookup(table: dict[str, tuple[str, ...]], names: tuple[str, ...]) -> dict[str, str]:
    word_to_name = {name: name for name in names}
    for name, words in table.items():
        word_to_name.update({word: name for word in words})
    return word_to_name


_COLOUR_OF = _lookup(COLOUR_WORDS, COLOURS)
_SIZE_OF = _lookup(SIZE_WORDS, ())
# Multi-word shape names ("plus sign") become one token before splitting.
_SHAPE_PHRASES = {phrase: name for name, phrases in SHAPE_WORDS.items() for phrase in phrases if " " in phrase}
_SHAPE_OF = {**_lookup(SHAPE_WORDS, SHAPES), **{p.replace(" ", "_"): n for p, n in _SHAPE_PHRASES.items()}}
_DIRECTION_OF = {phrase: name for name, phrases in DIRECTION_PHRASES.items() for phrase in phrases}
# Longest direction phrase first, so "to the left" wins over a bare "left" after the verb.
_DIRECTION_ALTERNATIVES = "|".join(sorted(map(re.escape, _DIRECTION_OF), key=len, reverse=True))
_MOTION = re.compile(rf"\b(?:{'|'.join(MOTION_VERBS)})\s+({_DIRECTION_ALTERNATIVES})\b")
_BACKGROUND_NOUNS = {"background", "backdrop"}
_BEFORE_BACKGROUND = {"on", "against", "over"}


def _tokens(text: str) -> list[str]:
    for phrase in _SHAPE_PHRASES:
        text = text.replace(phrase, phrase.replace(" ", "_"))
    return re.findall(r"[a-z_]+", text)


def _position(tokens: list[str]) -> str | None:
    words = set(tokens)
    top, bottom = bool({"top", "upper"} & words), bool({"bottom", "lower"} & words)
    left, right = "left" in words, "right" in words
    if (top and bottom) or (left and right):
        return None  # contradictory, e.g. two objects on either side
    vertical = "top" if top else "bottom" if bottom else None
    horizontal = "left" if left else "right" if right else None
    if vertical and horizontal:
        return f"{vertical} {horizontal}"
    if vertical or horizontal:
        return vertical or horizontal
    return "center" if {"center", "centre", "middle"} & words else None


def _colours(tokens: list[str], shape_index: int | None) -> tuple[str | None, str | None]:
    # The shape's colour is the word right before the shape noun; the background's is the one followed by
    # "background"/"backdrop" or preceded by "on"/"against"/"over" ("a red circle against blue"). Anything
    # else is too ambiguous to guess.
    colour = background = None
    for i, token in enumerate(tokens):
        name = _COLOUR_OF.get(token)
        if name is None:
            continue
        if shape_index is not None and i == shape_index - 1:
            colour = name
        elif ((i + 1 < len(tokens) and tokens[i + 1] in _BACKGROUND_NOUNS)
              or (i > 0 and tokens[i - 1] in _BEFORE_BACKGROUND)):
            background = name
    return colour, background


def _unique(values: list[str]) -> str | None:
    return values[0] if len(set(values)) == 1 else None


def parse_caption(text: str) -> Scene | PartialScene:
    """The attributes named by `text`: a `Scene` when it states all five and no motion, else a `PartialScene`.

    An attribute named inconsistently (two different shapes, say) is left None rather than guessed.
    """
    text = text.lower().replace("-", " ")
    motion = _MOTION.search(text)
    direction = _DIRECTION_OF[motion.group(1)] if motion else None
    # The direction's "left"/"right" must not be read as a position.
    tokens = _tokens(text[: motion.start()] + " " + text[motion.end() :] if motion else text)
    shape_hits = [(i, _SHAPE_OF[t]) for i, t in enumerate(tokens) if t in _SHAPE_OF]
    shape = _unique([name for _, name in shape_hits])
    colour, background = _colours(tokens, shape_hits[0][0] if shape and shape_hits else None)
    parsed = PartialScene(
        shape=shape,
        colour=colour,
        background=background,
        size=_unique([_SIZE_OF[t] for t in tokens if t in _SIZE_OF]),
        position=_position(tokens),
        direction=direction,
    )
    complete = parsed.scene() if direction is None else None
    return complete if complete is not None else parsed
