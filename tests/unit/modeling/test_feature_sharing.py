"""RF-Edit's attention-processor hooks on a real (tiny, random-weight) diffusers FLUX transformer (issue 6).

The processors must be invisible until asked (bit-identical outputs, originals restored even on
error), store exactly one value tensor per chosen block and evaluation, and on injection hand each
evaluation the twin stored for the same interval, stage and block.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from modeling.conditioning import FluxConditioning
from modeling.architectures import flux
from modeling.feature_sharing import (
    FeatureBank,
    FeatureKey,
    ValueSharing,
    ValueSharingProcessor,
    default_blocks,
    parse_blocks,
    shared_value_features,
)
from sampling.contract import VelocityModel
from sampling.inversion import invert
from sampling.rf_edit import Stage, rf_edit
from sampling.solvers import sample_rf_solver
from tests.fixtures.tiny_models import TEXT_HIDDEN, build_flux

SINGLE_BLOCKS = 4


@pytest.fixture(scope="module")
def transformer() -> nn.Module:
    return build_flux(7, num_single_layers=SINGLE_BLOCKS)


def prompt(seed: int, batch: int = 2) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 5, TEXT_HIDDEN, generator=generator),
            torch.randn(batch, TEXT_HIDDEN, generator=generator))


def velocity_model(transformer: nn.Module, seed: int, batch: int = 2) -> VelocityModel:
    context, pooled = prompt(seed, batch)

    def velocity(x: Tensor, sigma: Tensor) -> Tensor:
        with torch.no_grad():
            return flux.velocity(transformer, x, sigma, FluxConditioning(context, pooled), None)

    return velocity


@pytest.fixture(scope="module")
def latent() -> Tensor:
    return torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(1))


def sigmas(steps: int) -> Tensor:
    return torch.linspace(1.0, 0.0, steps + 1)


def test_installed_processors_change_nothing_until_asked_and_are_removed_after(transformer: nn.Module,
                                                                                latent: Tensor) -> None:
    model = velocity_model(transformer, 0)
    sigma = torch.full((2,), 0.6)
    before = model(latent, sigma)
    originals = [block.attn.processor for block in transformer.single_transformer_blocks]
    sharing = ValueSharing(FeatureBank())
    with shared_value_features(transformer, range(SINGLE_BLOCKS), sharing):
        assert all(isinstance(block.attn.processor, ValueSharingProcessor)
                   for block in transformer.single_transformer_blocks)
        assert torch.equal(model(latent, sigma), before)
    assert [block.attn.processor for block in transformer.single_transformer_blocks] == originals
    assert len(sharing.bank.stored_keys) == 0


def test_processors_are_restored_when_the_run_fails(transformer: nn.Module) -> None:
    originals = [block.attn.processor for block in transformer.single_transformer_blocks]
    with pytest.raises(RuntimeError, match="boom"), shared_value_features(transformer, (2, 3),
                                                                          ValueSharing(FeatureBank())):
        raise RuntimeError("boom")
    assert [block.attn.processor for block in transformer.single_transformer_blocks] == originals


def test_recording_stores_one_value_per_block_and_injecting_replays_it(transformer: nn.Module,
                                                                      latent: Tensor) -> None:
    bank = FeatureBank()
    sharing = ValueSharing(bank)
    source, target = velocity_model(transformer, 0), velocity_model(transformer, 1)
    sigma = torch.full((2,), 0.8)
    with shared_value_features(transformer, (2, 3), sharing):
        with sharing.recording(0, Stage.MAIN):
            recorded = source(latent, sigma)
        assert bank.stored_keys == {FeatureKey(0, Stage.MAIN, 2), FeatureKey(0, Stage.MAIN, 3)}
        stored = bank.take(FeatureKey(0, Stage.MAIN, 2), torch.empty(2, 5 + 16, 2, 16))
        assert stored.shape == (2, 5 + 16, 2, 16)  # text and image tokens, 2 heads of 16
        # The same prompt and input with its own values injected gives the same output.
        with sharing.injecting(0, Stage.MAIN):
            assert torch.equal(source(latent, sigma), recorded)
        plain_target = target(latent, sigma)
        with sharing.injecting(0, Stage.MAIN):
            injected_target = target(latent, sigma)
    assert not torch.equal(injected_target, plain_target)  # the source's values changed the target pass


def test_a_missing_twin_or_a_different_shape_is_a_clear_error(transformer: nn.Module, latent: Tensor) -> None:
    bank = FeatureBank()
    sharing = ValueSharing(bank)
    model = velocity_model(transformer, 0)
    with shared_value_features(transformer, (3,), sharing):
        with pytest.raises(ValueError, match="no stored feature"), sharing.injecting(5, Stage.MIDPOINT):
            model(latent, torch.full((2,), 0.5))
        with sharing.recording(0, Stage.MAIN):
            model(latent, torch.full((2,), 0.5))
        with pytest.raises(ValueError, match="same image size"), sharing.injecting(0, Stage.MAIN):
            model(torch.randn(2, 16, 4, 4), torch.full((2,), 0.5))
        with pytest.raises(ValueError, match="already stored"), sharing.recording(0, Stage.MAIN):
            model(latent, torch.full((2,), 0.5))


def test_a_doubled_cfg_batch_gets_the_stored_batch_on_both_halves() -> None:
    bank = FeatureBank()
    key = FeatureKey(1, Stage.MIDPOINT, 0)
    stored = torch.randn(2, 3, 2, 4)
    bank.store(key, stored)
    taken = bank.take(key, torch.empty(4, 3, 2, 4, dtype=torch.float64))
    assert taken.dtype == torch.float64
    torch.testing.assert_close(taken, torch.cat([stored, stored]).double())
    assert bank.injected_keys == {key} and bank.nbytes() == stored.numel() * 4


def test_rf_edit_on_the_transformer_injects_every_stored_feature_and_nothing_else(transformer: nn.Module,
                                                                                  latent: Tensor) -> None:
    bank = FeatureBank()
    sharing = ValueSharing(bank)
    blocks = (1, 3)
    with shared_value_features(transformer, blocks, sharing):
        rf_edit(velocity_model(transformer, 0), velocity_model(transformer, 1), latent, sigmas(6), inject=3,
                sharing=sharing)
    expected = {FeatureKey(step, stage, block) for step in range(3) for stage in Stage for block in blocks}
    assert bank.stored_keys == expected
    assert bank.injected_keys == bank.stored_keys


def test_rf_edit_with_inject_zero_equals_plain_inversion_and_sampling_on_the_transformer(
        transformer: nn.Module, latent: Tensor) -> None:
    source, target = velocity_model(transformer, 0), velocity_model(transformer, 1)
    expected = sample_rf_solver(target, invert(source, sample_rf_solver, sigmas(5), latent), sigmas(5))
    sharing = ValueSharing(FeatureBank())
    with shared_value_features(transformer, default_blocks(SINGLE_BLOCKS), sharing):
        edited = rf_edit(source, target, latent, sigmas(5), inject=0, sharing=sharing)
    assert torch.equal(edited, expected)
    assert not sharing.bank.stored_keys


def test_block_choice_follows_the_paper_and_reads_lists() -> None:
    assert default_blocks(38) == tuple(range(20, 38))  # FLUX dev: single blocks with index > 19
    assert default_blocks(4) == (2, 3)
    assert default_blocks(1) == (0,)
    assert parse_blocks("auto", 38) == tuple(range(20, 38))
    assert parse_blocks(" 1, 3 ", 4) == (1, 3)
    assert parse_blocks("20-22,37", 38) == (20, 21, 22, 37)
    assert parse_blocks("none", 4) == ()
    for bad in ("2-1", "4", "x", "1-"):
        with pytest.raises(ValueError, match="blocks"):
            parse_blocks(bad, 4)


def test_scopes_do_not_nest() -> None:
    sharing = ValueSharing(FeatureBank())
    with pytest.raises(RuntimeError, match="do not nest"), sharing.recording(0, Stage.MAIN), \
            sharing.injecting(0, Stage.MAIN):
        pass
