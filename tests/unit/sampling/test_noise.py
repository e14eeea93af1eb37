"""sampling/noise.py: seeded, reproducible noise with ComfyUI's batch_index rule."""

from __future__ import annotations

import pytest
import torch

from sampling.noise import seeded_noise

SHAPE = (3, 4, 8, 8)


def test_same_seed_same_noise_and_different_seeds_differ() -> None:
    first = seeded_noise(42, SHAPE)
    assert first.shape == SHAPE and first.dtype == torch.float32 and first.device.type == "cpu"
    assert torch.equal(first, seeded_noise(42, SHAPE))
    assert not torch.equal(first, seeded_noise(43, SHAPE))


def test_noise_is_independent_of_the_global_rng() -> None:
    with torch.random.fork_rng():  # leave other tests' global RNG alone
        torch.manual_seed(0)
        first = seeded_noise(7, SHAPE)
        torch.randn(100)
        assert torch.equal(first, seeded_noise(7, SHAPE))


def test_noise_is_the_cpu_generators_standard_normal_stream() -> None:
    # What ComfyUI's prepare_noise draws; pinned values catch a change in the stream itself.
    expected = torch.randn(SHAPE, generator=torch.Generator("cpu").manual_seed(5))
    assert torch.equal(seeded_noise(5, SHAPE), expected)
    assert seeded_noise(0, (1,)).item() == pytest.approx(1.5409960746765137)


def test_large_seeds_are_accepted() -> None:
    assert seeded_noise(2**64 - 1, (2, 2)).shape == (2, 2)


def test_batch_index_picks_draws_of_a_one_item_at_a_time_stream() -> None:
    generator = torch.Generator("cpu").manual_seed(9)
    items = [torch.randn((1,) + SHAPE[1:], generator=generator) for _ in range(4)]
    picked = seeded_noise(9, (2,) + SHAPE[1:], batch_index=[3, 1])
    assert torch.equal(picked[0], items[3][0])
    assert torch.equal(picked[1], items[1][0])
    repeated = seeded_noise(9, (2,) + SHAPE[1:], batch_index=[2, 2])
    assert torch.equal(repeated[0], repeated[1]) and torch.equal(repeated[0], items[2][0])


def test_a_latent_split_from_a_batch_keeps_its_noise() -> None:
    batch = seeded_noise(11, SHAPE, batch_index=[0, 1, 2])
    assert torch.equal(seeded_noise(11, (1,) + SHAPE[1:], batch_index=[2])[0], batch[2])


def test_batch_index_must_match_the_batch() -> None:
    with pytest.raises(ValueError, match="one index per batch item"):
        seeded_noise(1, SHAPE, batch_index=[0, 1])
    with pytest.raises(ValueError, match=">= 0"):
        seeded_noise(1, (1, 2), batch_index=[-1])
