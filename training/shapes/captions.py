"""Varied English captions (lower case) for scenes and motion clips.

A full caption names all five attributes (and the direction, for motion), each with a word the parser
in `parse` maps back unambiguously. A partial caption leaves out the size, the position or both, the way
people write prompts ("a red circle on a blue background"); the image it describes still has some size
and position, so a model trained on both learns to fill in what a prompt leaves open.
The phrase tables here are the single source of the wording; `parse` reads the same tables.

Two grammars: the base one (`TEMPLATES`, `UNPLACED_TEMPLATES`) that the demo model's first stages
learnt and that `make_dataset` captions use, and the widened one (`caption(..., widened=True)`), which
adds to it the orders, separators, prepositions and article forms people type ("red circle on a blue
background", "one red circle over a blue background", "blue background; a red circle"). Wordings
kept for evaluation only live apart in `held_out_wordings`; neither grammar here can produce them.
Imports `scene`.
"""

from __future__ import annotations

import itertools

import numpy as np

from training.shapes.scene import MotionScene, Scene

SIZE_WORDS: dict[str, tuple[str, ...]] = {"small": ("small", "little", "tiny"), "large": ("large", "big")}

# Synonyms only where they are natural; each word belongs to exactly one name.
COLOUR_WORDS: dict[str, tuple[str, ...]] = {"gray": ("gray", "grey")}
SHAPE_WORDS: dict[str, tuple[str, ...]] = {"cross": ("cross", "plus sign")}

# Full placement phrases (with their preposition). Corners name both sides; edge cells name one side
# (optionally with "center"/"middle" for the other axis); the centre names only "center"/"middle".
PLACE_PHRASES: dict[str, tuple[str, ...]] = {
    "top left": ("at the top left", "in the top left corner", "in the upper left corner"),
    "top": ("at the top", "at the top center", "in the upper middle"),
    "top right": ("at the top right", "in the top right corner", "in the upper right corner"),
    "left": ("on the left", "on the left side", "at the middle left"),
    "center": ("in the center", "in the middle", "at the center"),
    "right": ("on the right", "on the right side", "at the middle right"),
    "bottom left": ("at the bottom left", "in the bottom left corner", "in the lower left corner"),
    "bottom": ("at the bottom", "at the bottom center", "in the lower middle"),
    "bottom right": ("at the bottom right", "in the bottom right corner", "in the lower right corner"),
}
# Bare placement names for list-like captions ("a small green ring, bottom right, on white").
PLACE_NAMES: dict[str, tuple[str, ...]] = {
    "top left": ("top left",),
    "top": ("top middle", "top center"),
    "top right": ("top right",),
    "left": ("middle left", "left side"),
    "center": ("center", "middle"),
    "right": ("middle right", "right side"),
    "bottom left": ("bottom left",),
    "bottom": ("bottom middle", "bottom center"),
    "bottom right": ("bottom right",),
}
MOTION_VERBS: tuple[str, ...] = ("moving", "sliding", "drifting")
DIRECTION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("left", "to the left"),
    "right": ("right", "to the right"),
    "up": ("up", "upward"),
    "down": ("down", "downward"),
}

# {thing} is "<size> <colour> <shape>" with its article, so the colour word always sits right before the
# shape word; {bare} is the same without an article and {one} with "one" instead; {where} is a full
# placement phrase, {name} a bare one; {bg} is the background colour word and {a_bg} the same with its
# article.
TEMPLATES: tuple[str, ...] = (
    "{thing} {where} on {a_bg} background",
    "{bg} background, {thing} {where}",
    "{thing}, {name}, on {bg}",
    "{where}, {thing} against {a_bg} background",
    "{a_bg} backdrop with {thing} {where}",
    "{thing} on {bg}, {where}",
    "an image of {thing} {where}, {bg} background",
)
# The same sentence shapes without a placement, for captions that leave the position out.
UNPLACED_TEMPLATES: tuple[str, ...] = (
    "{thing} on {a_bg} background",
    "{bg} background, {thing}",
    "{thing}, on {bg}",
    "{thing} against {a_bg} background",
    "{a_bg} backdrop with {thing}",
    "{thing} on {bg}",
    "an image of {thing}, {bg} background",
)
# The widened grammar's further sentence shapes (added to the base ones above). They teach the pieces
# of typed prompts: no article or "one", other prepositions ("over", "in front of", "against ...
# backdrop"), other separators (";", "and") and both orders. Some whole sentence shapes are
# deliberately missing here because they are the held-out wordings (`held_out_wordings`): no
# "{bg} background with ...", no bare "against {bg}", and no comma form that starts with the
# article-less shape and ends with the background.
WIDENED_TEMPLATES: tuple[str, ...] = (
    "{bare} {where} on {a_bg} background",
    "{one} {where} on {a_bg} background",
    "{thing} {where} over {a_bg} background",
    "{thing} {where} in front of {a_bg} background",
    "{bg} background; {thing} {where}",
    "{bare} {where}, {bg} background",
    "{bg} backdrop, {one} {where}",
    "{bare} {where} against {a_bg} backdrop",
    "{a_bg} background and {thing} {where}",
    "{name}: {thing} on {bg}",
    "{bare} {name} on {a_bg} background",
    "{thing} {name}, {bg} backdrop",
)
WIDENED_UNPLACED_TEMPLATES: tuple[str, ...] = (
    "{bare} on {a_bg} background",
    "{one} on {a_bg} background",
    "{one} on {bg}",
    "{bare} on {bg}",
    "{thing} over {a_bg} background",
    "{thing} in front of {a_bg} background",
    "{bg} background; {bare}",
    "{bg} background, {one}",
    "{bare} against {a_bg} backdrop",
    "{a_bg} background and {thing}",
    "{bare}, on {bg}",
    "{one}, {bg} backdrop",
    "{bare}; {bg} background",
)
# Attributes a caption may leave out; shape, colour and background are always named.
OPTIONAL_ATTRIBUTES: frozenset[str] = frozenset({"size", "position"})
MOTION_TEMPLATES: tuple[str, ...] = (
    "{thing} {verb} {dir} from {place} on {a_bg} background",
    "{bg} background, {thing} {where}, {verb} {dir}",
    "{thing} starting {where} and {verb} {dir} across {a_bg} background",
    "on {a_bg} background, {thing} {verb} {dir}, starting {where}",
)


def _choice(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _slots(colour: str, shape: str, where: str, name: str, background: str, size: str) -> dict[str, str]:
    """Every template slot from the chosen words; `size` is "" or the size word plus a space."""
    bare = f"{size}{colour} {shape}"
    return {
        "thing": _with_article(bare),
        "bare": bare,
        "one": f"one {bare}",
        "where": where,
        "name": name,
        # "from the top left" reads better than "from at the top left": keep only the noun phrase.
        "place": where.split(" ", 1)[1],
        "bg": background,
        "a_bg": _with_article(background),
    }


def _words(rng: np.random.Generator, scene: Scene, with_size: bool = True) -> dict[str, str]:
    # The draw order is fixed: base captions (and so every dataset's captions) stay what they were.
    colour = _choice(rng, COLOUR_WORDS.get(scene.colour, (scene.colour,)))
    shape = _choice(rng, SHAPE_WORDS.get(scene.shape, (scene.shape,)))
    where = _choice(rng, PLACE_PHRASES[scene.position])
    background = _choice(rng, COLOUR_WORDS.get(scene.background, (scene.background,)))
    size = f"{_choice(rng, SIZE_WORDS[scene.size])} " if with_size else ""
    return _slots(colour, shape, where, _choice(rng, PLACE_NAMES[scene.position]), background, size)


def every_wording(scene: Scene, template: str, with_size: bool = True) -> set[str]:
    """All the strings `template` can give for `scene` over every synonym choice, for checking that two
    sets of templates never produce the same caption."""
    choices = itertools.product(
        COLOUR_WORDS.get(scene.colour, (scene.colour,)), SHAPE_WORDS.get(scene.shape, (scene.shape,)),
        PLACE_PHRASES[scene.position], PLACE_NAMES[scene.position],
        COLOUR_WORDS.get(scene.background, (scene.background,)),
        tuple(f"{word} " for word in SIZE_WORDS[scene.size]) if with_size else ("",))
    return {template.format(**_slots(*words)) for words in choices}


def fill(template: str, scene: Scene, rng: np.random.Generator, with_size: bool = True) -> str:
    """`template` filled with randomly chosen words for `scene`."""
    return template.format(**_words(rng, scene, with_size))


def templates_of(omit: frozenset[str], widened: bool) -> tuple[str, ...]:
    """The sentence shapes `caption` chooses from for captions leaving out `omit`."""
    unplaced = "position" in omit
    base = UNPLACED_TEMPLATES if unplaced else TEMPLATES
    if not widened:
        return base
    return base + (WIDENED_UNPLACED_TEMPLATES if unplaced else WIDENED_TEMPLATES)


def ends_in_joined_background(template: str) -> bool:
    """Whether a sentence shape ends in the background joined on by a comma or ";" ("..., blue background",
    "...; blue background", "..., blue backdrop")."""
    return template.endswith(("{bg} background", "{bg} backdrop")) and (", {bg}" in template or "; {bg}" in template)


def joined_background_templates(omit: frozenset[str]) -> tuple[str, ...]:
    """The sentence shapes of the widened grammar (base ones included) for captions leaving out `omit` that
    end in a joined-on background."""
    return tuple(template for template in templates_of(omit, widened=True) if ends_in_joined_background(template))


def caption(scene: Scene, rng: np.random.Generator, omit: frozenset[str] = frozenset(),
            widened: bool = False, joined_background_share: float = 0.0) -> str:
    """A caption for `scene` in a randomly chosen template and wording, leaving out the attributes in `omit`
    (a subset of OPTIONAL_ATTRIBUTES); `widened` draws from the base and the widened sentence shapes together,
    and then `joined_background_share` of the captions (on top of their share in a uniform draw) from the
    shapes that end in a joined-on background (`joined_background_templates`)."""
    if not omit <= OPTIONAL_ATTRIBUTES:
        raise ValueError(f"captions can leave out only {sorted(OPTIONAL_ATTRIBUTES)}, "
                         f"not {sorted(omit - OPTIONAL_ATTRIBUTES)}")
    # No draw at share 0, so captions without the share stay what they were for a given seed.
    if widened and joined_background_share > 0 and rng.random() < joined_background_share:
        template = _choice(rng, joined_background_templates(omit))
    else:
        template = _choice(rng, templates_of(omit, widened))
    return fill(template, scene, rng, with_size="size" not in omit)


def motion_caption(motion: MotionScene, rng: np.random.Generator) -> str:
    """A caption for a motion clip: the scene at its start plus the direction of travel."""
    template = _choice(rng, MOTION_TEMPLATES)
    words = _words(rng, motion.scene)
    words["verb"] = _choice(rng, MOTION_VERBS)
    words["dir"] = _choice(rng, DIRECTION_PHRASES[motion.direction])
    return template.format(**words)
