"""The shapes world's generator: seeded scenes, renders, control images, motion clips, captions and datasets."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from training.shapes import (
    ATTRIBUTES,
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    MotionScene,
    PartialScene,
    Scene,
    allowed_directions,
    caption,
    edges,
    make_dataset,
    mask,
    motion_caption,
    parse_caption,
    render,
    render_frames,
    sample_motion_scene,
    sample_scene,
    split_of,
)
from training.shapes.captions import PLACE_PHRASES
from training.shapes.vocabulary import MAX_JITTER_PX, MOTION_STEP_PX, PALETTE


def _scenes(n: int, seed: int) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [sample_scene(rng) for _ in range(n)]


def test_palette_is_well_separated() -> None:
    rgb = np.array(list(PALETTE.values()), dtype=float)
    closest = min(np.linalg.norm(a - b) for a, b in itertools.combinations(rgb, 2))
    assert len(PALETTE) >= 8 and closest > 95


def test_same_seed_same_world() -> None:
    first, second = _scenes(200, 7), _scenes(200, 7)
    assert first == second and [s.jitter for s in first] == [s.jitter for s in second]
    images_a, captions_a, scenes_a = make_dataset(100, seed=3)
    images_b, captions_b, scenes_b = make_dataset(100, seed=3)
    assert np.array_equal(images_a, images_b) and captions_a == captions_b and scenes_a == scenes_b
    images_c, captions_c, _ = make_dataset(100, seed=4)
    assert not np.array_equal(images_a, images_c) and captions_a != captions_c


def test_dataset_shapes_and_types() -> None:
    images, captions, scenes = make_dataset(16, seed=0, size=32)
    assert images.shape == (16, 32, 32, 3) and images.dtype == np.uint8
    assert len(captions) == len(scenes) == 16 and all(isinstance(c, str) for c in captions)
    assert all(np.array_equal(image, render(scene, 32)) for image, scene in zip(images, scenes, strict=True))


def test_vocabulary_is_covered() -> None:
    scenes = _scenes(3000, 11)
    expected = {"shape": SHAPES, "colour": COLOURS, "background": COLOURS, "size": SIZES, "position": POSITIONS}
    for name, values in expected.items():
        assert {getattr(s, name) for s in scenes} == set(values), name
    assert {s.jitter for s in scenes} == set(itertools.product(range(-MAX_JITTER_PX, MAX_JITTER_PX + 1), repeat=2))
    rng = np.random.default_rng(0)
    captions = " | ".join(caption(s, rng) for s in scenes)
    assert all(phrase in captions for phrases in PLACE_PHRASES.values() for phrase in phrases)


def test_shape_colour_never_equals_background() -> None:
    assert all(s.colour != s.background for s in _scenes(5000, 5))
    with pytest.raises(ValueError, match="must differ"):
        Scene("circle", "red", "red", "small", "center")
    with pytest.raises(ValueError, match="shape must be one of"):
        Scene("hexagon", "red", "blue", "small", "center")


def test_every_caption_parses_back() -> None:
    rng = np.random.default_rng(2024)
    for scene in _scenes(5000, 1):
        text = caption(scene, rng)
        assert parse_caption(text) == scene, text


@pytest.mark.parametrize("omit", [{"size"}, {"position"}, {"size", "position"}])
def test_partial_captions_state_everything_but_what_they_omit(omit: set[str]) -> None:
    rng = np.random.default_rng(7)
    for scene in _scenes(2000, 3):
        text = caption(scene, rng, frozenset(omit))
        parsed = parse_caption(text)
        assert isinstance(parsed, PartialScene), text
        expected = {name: getattr(scene, name) for name in ("shape", "colour", "background", "size", "position")
                    if name not in omit}
        assert parsed.stated() == expected, text


def test_a_caption_cannot_omit_what_identifies_the_shape() -> None:
    with pytest.raises(ValueError, match="only"):
        caption(Scene("circle", "red", "blue", "small", "center"), np.random.default_rng(0), frozenset({"colour"}))


def test_every_motion_caption_parses_back() -> None:
    rng = np.random.default_rng(99)
    for _ in range(2000):
        motion = sample_motion_scene(rng)
        text = motion_caption(motion, rng)
        parsed = parse_caption(text)
        assert isinstance(parsed, PartialScene), text
        assert parsed.scene() == motion.scene and parsed.direction == motion.direction, text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a red circle", {"shape": "circle", "colour": "red"}),
        ("Big blue star on a white background, top-left", None),
        ("grey backdrop with a tiny plus sign", {"shape": "cross", "background": "gray", "size": "small"}),
        ("a red circle next to a blue square", {"position": None, "shape": None}),
        ("a ring on the left and a ring on the right", {"shape": "ring", "position": None}),
        ("a large red circle at the top left on a red background", {"colour": "red", "background": "red"}),
        ("a cyan ring sliding to the left, on black", {"direction": "left", "position": None, "background": "black"}),
    ],
)
def test_parse_hand_written_prompts(text: str, expected: dict[str, str | None] | None) -> None:
    parsed = parse_caption(text)
    if expected is None:
        assert parsed == Scene("star", "blue", "white", "large", "top left")
        return
    assert isinstance(parsed, PartialScene)
    for name, value in expected.items():
        assert getattr(parsed, name) == value, name


@pytest.mark.parametrize("size", ["small", "large"])
def test_shapes_fit_inside_at_every_position(size: str) -> None:
    extremes = list(itertools.product((-MAX_JITTER_PX, MAX_JITTER_PX), repeat=2))
    for shape, position, jitter in itertools.product(SHAPES, POSITIONS, extremes):
        shape_mask = mask(Scene(shape, "red", "blue", size, position, jitter))
        reference = mask(Scene(shape, "red", "blue", size, "center"))
        # Integer moves of a whole shape keep its pixel count; a clipped one would lose pixels.
        assert shape_mask.sum() == reference.sum() > 0, (shape, position, jitter)
        border = np.concatenate([shape_mask[0], shape_mask[-1], shape_mask[:, 0], shape_mask[:, -1]])
        assert not border.any(), (shape, position, jitter)


def test_large_shapes_are_larger() -> None:
    for shape in SHAPES:
        small, large = (mask(Scene(shape, "red", "blue", s, "center")).sum() for s in ("small", "large"))
        assert large > 1.8 * small, shape  # extents 26 vs 18 px: about 2.1x the area


def test_mask_is_the_rendered_foreground() -> None:
    for scene in _scenes(300, 8):
        image, shape_mask = render(scene), mask(scene)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8 and shape_mask.dtype == bool
        assert (image[shape_mask] == PALETTE[scene.colour]).all()
        assert (image[~shape_mask] == PALETTE[scene.background]).all()


def test_render_scales_with_size() -> None:
    scene = Scene("square", "red", "blue", "large", "top left", (1, -1))
    small, big = mask(scene, 64), mask(scene, 128)
    assert big.sum() == pytest.approx(4 * small.sum(), rel=0.05)
    assert np.array_equal(np.argwhere(big).mean(axis=0) / 2, np.argwhere(small).mean(axis=0) + 0.25)


def test_edges_are_the_mask_boundary() -> None:
    square = Scene("square", "red", "blue", "large", "center")
    square_mask, square_edges = mask(square), edges(square)
    side = int(np.sqrt(square_mask.sum()))
    assert square_edges.sum() == 4 * side - 4
    for scene in _scenes(200, 9):
        shape_mask, edge_map = mask(scene), edges(scene)
        assert edge_map.dtype == bool and edge_map.any()
        assert not (edge_map & ~shape_mask).any()
        # Every mask pixel off the edge has all four neighbours in the mask.
        interior = shape_mask & ~edge_map
        ys, xs = np.nonzero(interior)
        assert shape_mask[ys - 1, xs].all() and shape_mask[ys + 1, xs].all()
        assert shape_mask[ys, xs - 1].all() and shape_mask[ys, xs + 1].all()


def test_motion_frames_move_by_the_step() -> None:
    rng = np.random.default_rng(4)
    vectors = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
    for _ in range(100):
        motion = sample_motion_scene(rng)
        frames = render_frames(motion)
        assert frames.shape == (motion.frames, 64, 64, 3) and frames.dtype == np.uint8
        assert np.array_equal(frames[0], render(motion.scene))
        start = (frames[0] == PALETTE[motion.scene.colour]).all(axis=-1)
        for t in range(1, motion.frames):
            moved = (frames[t] == PALETTE[motion.scene.colour]).all(axis=-1)
            shift = tuple(MOTION_STEP_PX * t * v for v in vectors[motion.direction])
            # The whole shape moves (nothing clipped), so a roll reproduces the frame exactly.
            assert np.array_equal(moved, np.roll(start, shift, axis=(0, 1))), (motion, t)


def test_motion_must_stay_inside() -> None:
    scene = Scene("star", "red", "blue", "large", "top left")
    assert set(allowed_directions("top left")) == {"right", "down"}
    assert set(allowed_directions("center")) == {"left", "right", "up", "down"}
    with pytest.raises(ValueError, match="cannot move left"):
        MotionScene(scene, "left")
    with pytest.raises(ValueError, match="frames"):
        MotionScene(scene, "right", frames=50)


def test_split_holds_out_whole_scenes() -> None:
    everything = [
        Scene(shape, colour, background, size, position)
        for shape, colour, background, size, position in itertools.product(SHAPES, COLOURS, COLOURS, SIZES, POSITIONS)
        if colour != background
    ]
    held_out = sum(split_of(s) == "eval" for s in everything) / len(everything)
    assert 0.08 < held_out < 0.12
    _, train_captions, train_scenes = make_dataset(3000, seed=0, split="train")
    _, eval_captions, eval_scenes = make_dataset(500, seed=0, split="eval")
    assert all(split_of(s) == "train" for s in train_scenes)
    assert all(split_of(s) == "eval" for s in eval_scenes)
    assert not set(train_scenes) & set(eval_scenes)
    assert not set(train_captions) & set(eval_captions)
    # The rule is a function of the attributes only: jitter and the dataset seed cannot move a scene.
    scene = eval_scenes[0]
    assert split_of(Scene(*(getattr(scene, a) for a in ATTRIBUTES), jitter=(2, 2))) == "eval"
