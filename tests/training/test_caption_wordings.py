"""The widened caption grammar and the held-out evaluation wordings: widened captions still state what
they describe, and no training caption is ever one of the held-out wordings."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from training.flow_model import describe, widened_grammar_finetuning
from training.shapes import COLOURS, POSITIONS, SHAPES, SIZES, Scene, caption, parse_caption, sample_scene
from training.shapes.captions import (
    TEMPLATES,
    UNPLACED_TEMPLATES,
    WIDENED_TEMPLATES,
    WIDENED_UNPLACED_TEMPLATES,
    every_wording,
    joined_background_templates,
    templates_of,
)
from training.shapes.held_out_wordings import EVALUATION_WORDINGS, HELD_OUT_WORDINGS

OMISSIONS = (frozenset(), frozenset({"size"}), frozenset({"position"}), frozenset({"size", "position"}))


def _scenes() -> list[Scene]:
    """Scenes covering every shape, colour (as shape and as background), size and position."""
    scenes = []
    for index, (shape, colour, size, position) in enumerate(itertools.product(SHAPES, COLOURS, SIZES, POSITIONS)):
        background = COLOURS[(COLOURS.index(colour) + 1 + index % (len(COLOURS) - 1)) % len(COLOURS)]
        scenes.append(Scene(shape, colour, background, size, position))
    return scenes[::7]  # every attribute value still appears; 155 scenes keep the test quick


def _training_wordings(scene: Scene) -> set[str]:
    """Every caption the training grammar (base and widened) can write for `scene`, with any omission."""
    return {text for omit in OMISSIONS for template in templates_of(omit, widened=True)
            for text in every_wording(scene, template, with_size="size" not in omit)}


def _stated(text: str) -> dict[str, str]:
    parsed = parse_caption(text)
    if isinstance(parsed, Scene):
        return {name: getattr(parsed, name) for name in ("shape", "colour", "background", "size", "position")}
    return parsed.stated()


def test_the_training_grammar_never_writes_a_held_out_wording() -> None:
    for scene in _scenes():
        training = _training_wordings(scene)
        for wording in HELD_OUT_WORDINGS:
            held_out = every_wording(scene, wording.template, with_size=wording.full)
            assert not held_out & training, (wording.name, sorted(held_out & training)[:3])


def test_the_enumeration_covers_what_captions_are_drawn() -> None:
    """The disjointness test above is only as good as `every_wording`: every sampled caption is in it."""
    rng = np.random.default_rng(5)
    for _ in range(400):
        scene = sample_scene(rng)
        text = describe(scene, rng, partial_captions=0.5, widened=True, joined_background_share=0.5)
        assert text in _training_wordings(scene), text
        assert caption(scene, rng) in {t for template in TEMPLATES for t in every_wording(scene, template)}


def test_the_issue_s_example_styles_are_evaluation_wordings() -> None:
    scene = Scene("circle", "red", "blue", "small", "center")
    rng = np.random.default_rng(0)
    prompts = {w.prompt(scene, rng) for w in EVALUATION_WORDINGS if not w.full}
    assert prompts == {"red circle, blue background", "one red circle against blue",
                       "blue background with a red circle", "a red circle on a blue background"}
    # The base grammar's own short form is scored as a seen wording, not passed off as held out.
    seen = [w for w in EVALUATION_WORDINGS if not w.held_out]
    assert [w.template for w in seen] == ["{thing} on {a_bg} background"]
    assert seen[0].template in UNPLACED_TEMPLATES
    assert any(w.full for w in HELD_OUT_WORDINGS) and any(not w.full for w in HELD_OUT_WORDINGS)


@pytest.mark.parametrize("omit", OMISSIONS)
def test_widened_captions_state_exactly_their_attributes(omit: frozenset[str]) -> None:
    rng = np.random.default_rng(1)
    for _ in range(300):
        scene = sample_scene(rng)
        text = caption(scene, rng, omit, widened=True)
        stated = _stated(text)
        expected = {name: getattr(scene, name) for name in ("shape", "colour", "background", "size", "position")
                    if name not in omit}
        assert stated == expected, text


def test_evaluation_wordings_state_exactly_what_they_are_scored_on() -> None:
    rng = np.random.default_rng(2)
    for wording in EVALUATION_WORDINGS:
        named = ("shape", "colour", "background", "size", "position") if wording.full else (
            "shape", "colour", "background")
        for _ in range(100):
            scene = sample_scene(rng)
            text = wording.prompt(scene, rng)
            assert _stated(text) == {name: getattr(scene, name) for name in named}, (wording.name, text)


def test_the_widened_stage_mixes_both_grammars_and_partial_captions() -> None:
    settings = widened_grammar_finetuning(seed=0)
    assert settings.widened_grammar and settings.partial_captions == 0.5 and settings.open_size_is_large
    rng = np.random.default_rng(3)
    scenes = [sample_scene(rng) for _ in range(3000)]
    texts = [describe(scene, rng, settings.partial_captions, widened=True, open_size_is_large=True,
                      joined_background_share=settings.joined_background_share) for scene in scenes]
    base = [any(text in every_wording(scene, template, with_size=with_size)
                for template in (*TEMPLATES, *UNPLACED_TEMPLATES) for with_size in (True, False))
            for scene, text in zip(scenes[:300], texts[:300], strict=True)]
    assert 0.2 < np.mean(base) < 0.6  # 14 of the 39 sentence shapes are the base grammar's
    # Captions ending in a joined-on background are drawn more often than their 6 of 39 shapes would give.
    joined = [any(text in every_wording(scene, template, with_size=with_size)
                  for omit in OMISSIONS for template in joined_background_templates(omit)
                  for with_size in (True, False))
              for scene, text in zip(scenes[:300], texts[:300], strict=True)]
    assert settings.joined_background_share > 0 and np.mean(joined) > 0.3
    stated = [_stated(text) for text in texts]
    # Half the captions are drawn partial; a small shape's keeps its size, so about 42% end up partial.
    assert 0.37 < np.mean([len(names) < 5 for names in stated]) < 0.47
    # An open size always stands for a large shape.
    assert all("size" in names for names, scene in zip(stated, scenes, strict=True) if scene.size == "small")
    assert any("size" not in names for names in stated)
    assert {*WIDENED_TEMPLATES, *WIDENED_UNPLACED_TEMPLATES}.isdisjoint({*TEMPLATES, *UNPLACED_TEMPLATES})


def _joined_background_share(texts: list[str], scenes: list[Scene], omit: frozenset[str]) -> float:
    """Share of `texts` written in a sentence shape that ends in a joined-on background."""
    return float(np.mean([any(text in every_wording(scene, template, with_size="size" not in omit)
                              for template in joined_background_templates(omit))
                          for text, scene in zip(texts, scenes, strict=True)]))


@pytest.mark.parametrize("omit", OMISSIONS)
def test_the_joined_background_share_draws_more_captions_that_end_in_the_background(omit: frozenset[str]) -> None:
    joined = joined_background_templates(omit)
    # Every one ends in ", <colour> background/backdrop" or "; <colour> background", and none is held out.
    assert joined and all(t.endswith(("{bg} background", "{bg} backdrop")) for t in joined)
    assert all(", {bg}" in t or "; {bg}" in t for t in joined)
    assert set(joined) <= set(templates_of(omit, widened=True))
    rng = np.random.default_rng(6)
    scenes = [sample_scene(rng) for _ in range(600)]
    uniform = [caption(scene, rng, omit, widened=True) for scene in scenes]
    raised = [caption(scene, rng, omit, widened=True, joined_background_share=0.5) for scene in scenes]
    base_share = len(joined) / len(templates_of(omit, widened=True))
    assert abs(_joined_background_share(uniform, scenes, omit) - base_share) < 0.06
    assert abs(_joined_background_share(raised, scenes, omit) - (0.5 + 0.5 * base_share)) < 0.07
    # The base grammar is never changed by the share.
    assert caption(scenes[0], np.random.default_rng(7), omit, joined_background_share=0.9) == caption(
        scenes[0], np.random.default_rng(7), omit)
