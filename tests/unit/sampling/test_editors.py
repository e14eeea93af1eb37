"""FlowEdit, RF-Inversion and RF-Edit on the analytic Gaussian-mixture flow (issue 6, "Tests").

The oracle has exact velocities, so the editors' defining identities can be checked to rounding:
FlowEdit with one prompt on both sides returns the source, and FlowEdit between a mixture and its
translate moves every point by exactly the translation; RF-Inversion with eta = 1 throughout lands
on the source; RF-Edit with inject = 0 is RF-Solver inversion plus RF-Solver sampling, and every
injected feature meets the one stored for the same interval and stage.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from torch import Tensor

from sampling.contract import VelocityModel
from sampling.flowedit import FLOWEDIT_DEFAULTS, EditVelocities, FlowEditSettings, flowedit
from sampling.inversion import invert
from sampling.rf_edit import NoSharing, Stage, rf_edit
from sampling.rf_inversion import RFInversionSettings, controlled_forward, controlled_reverse, rf_inversion_edit
from sampling.solvers import sample_euler, sample_rf_solver
from tests.fixtures.gmm_flow import GaussianMixtureFlow

TRANSLATION = torch.tensor([0.7, -1.3], dtype=torch.float64)


def velocity_of(flow: GaussianMixtureFlow) -> VelocityModel:
    return lambda x, sigma: flow.velocity(x, sigma)


def linear_sigmas(steps: int) -> Tensor:
    return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)


@pytest.fixture(scope="module")
def sources(flow: GaussianMixtureFlow) -> Tensor:
    """64 clean points drawn from the mixture: the 'images' to edit."""
    return flow.sample_data(64, torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def translated(flow: GaussianMixtureFlow) -> GaussianMixtureFlow:
    return GaussianMixtureFlow(flow.means + TRANSLATION, flow.stds, flow.weights)


# -- FlowEdit -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n_max", "n_avg"), [(20, 1), (12, 3), (0, 1)])
def test_flowedit_with_one_prompt_on_both_sides_returns_the_source_exactly(
        flow: GaussianMixtureFlow, sources: Tensor, n_max: int, n_avg: int) -> None:
    same = velocity_of(flow)
    edited = flowedit(EditVelocities(same, same), sources, linear_sigmas(20), n_max=n_max, n_avg=n_avg,
                      generator=torch.Generator().manual_seed(1))
    assert torch.equal(edited, sources)


def test_flowedit_moves_every_point_by_the_translation_between_two_mixtures(
        flow: GaussianMixtureFlow, translated: GaussianMixtureFlow, sources: Tensor) -> None:
    # V_tar(z + (1 - sigma) d) = V_src(z) - d, so each step adds exactly (sigma - sigma_next) d.
    velocities = EditVelocities(velocity_of(flow), velocity_of(translated))
    edited = flowedit(velocities, sources, linear_sigmas(10), n_max=10, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(edited - sources, TRANSLATION.expand_as(sources), atol=1e-9, rtol=0)


def test_flowedit_starting_part_way_moves_only_the_remaining_share(
        flow: GaussianMixtureFlow, translated: GaussianMixtureFlow, sources: Tensor) -> None:
    velocities = EditVelocities(velocity_of(flow), velocity_of(translated))
    edited = flowedit(velocities, sources, linear_sigmas(10), n_max=4, generator=torch.Generator().manual_seed(5))
    moved = (edited - sources).norm(dim=1) / TRANSLATION.norm()
    assert 0.0 < float(moved.mean()) < 1.0  # it starts at sigma 0.4, so it cannot go the whole way


def test_flowedit_tail_samples_with_the_target_only(flow: GaussianMixtureFlow, translated: GaussianMixtureFlow,
                                                     sources: Tensor) -> None:
    calls = {"source": 0, "target": 0}

    def counted(name: str, model: VelocityModel) -> VelocityModel:
        def call(x: Tensor, sigma: Tensor) -> Tensor:
            calls[name] += 1
            return model(x, sigma)
        return call

    velocities = EditVelocities(counted("source", velocity_of(flow)), counted("target", velocity_of(translated)))
    edited = flowedit(velocities, sources, linear_sigmas(10), n_max=8, n_min=3, n_avg=2,
                      generator=torch.Generator().manual_seed(2))
    assert calls == {"source": 5 * 2, "target": 5 * 2 + 3}
    # The tail lands on the target mixture: near one of its means.
    nearest = torch.cdist(edited, translated.means).min(dim=1).values
    assert float(nearest.median()) < 1.0


def test_flowedit_is_reproducible_from_its_seed(flow: GaussianMixtureFlow, translated: GaussianMixtureFlow,
                                                sources: Tensor) -> None:
    velocities = EditVelocities(velocity_of(flow), velocity_of(translated))

    def run(seed: int) -> Tensor:
        return flowedit(velocities, sources, linear_sigmas(10), n_max=6, n_min=2,
                        generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))


def test_flowedit_batched_pair_is_used_when_given(flow: GaussianMixtureFlow, sources: Tensor) -> None:
    pairs = []

    def both(z_source: Tensor, z_target: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        pairs.append(sigma[0].item())
        return flow.velocity(z_source, sigma), flow.velocity(z_target, sigma)

    same = velocity_of(flow)
    flowedit(EditVelocities(same, same, both), sources, linear_sigmas(10), n_max=6,
             generator=torch.Generator().manual_seed(0))
    assert len(pairs) == 6


@pytest.mark.parametrize(("steps", "n_max", "n_min", "n_avg"), [(0, 0, 0, 1), (10, 11, 0, 1), (10, 5, 6, 1),
                                                                 (10, 5, 0, 0)])
def test_flowedit_settings_refuse_impossible_windows(steps: int, n_max: int, n_min: int, n_avg: int) -> None:
    with pytest.raises(ValueError, match="FlowEdit"):
        FlowEditSettings(steps, n_max, n_min, n_avg, 1.0, 1.0, 0)


def test_flowedit_defaults_carry_the_published_settings() -> None:
    assert FLOWEDIT_DEFAULTS["sd3"] == FlowEditSettings(50, 33, 0, 1, 3.5, 13.5, 42)
    assert FLOWEDIT_DEFAULTS["flux"] == FlowEditSettings(28, 24, 0, 1, 1.5, 5.5, 10)
    assert set(FLOWEDIT_DEFAULTS) == {"sd3", "flux", "demo"}


# -- RF-Inversion -------------------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0])
def test_rf_inversion_with_eta_one_throughout_reproduces_the_source(
        flow: GaussianMixtureFlow, translated: GaussianMixtureFlow, sources: Tensor, gamma: float) -> None:
    settings = RFInversionSettings(gamma=gamma, eta=1.0, start=0.0, stop=1.0)
    edited = rf_inversion_edit(velocity_of(flow), velocity_of(translated), sources, linear_sigmas(12), settings,
                               generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(edited, sources, atol=1e-12, rtol=0)


def test_rf_inversion_without_control_is_euler_inversion_and_sampling(flow: GaussianMixtureFlow,
                                                                      sources: Tensor) -> None:
    sigmas = linear_sigmas(16)
    model = velocity_of(flow)
    state = controlled_forward(model, sources, sigmas, gamma=0.0, endpoint=torch.zeros_like(sources))
    assert torch.equal(state, invert(model, sample_euler, sigmas, sources))
    regenerated = controlled_reverse(model, state, sigmas, source=sources, eta=0.0, controlled=range(16))
    assert torch.equal(regenerated, sample_euler(model, state, sigmas))


def test_rf_inversion_with_full_gamma_lands_on_its_noise(flow: GaussianMixtureFlow, sources: Tensor) -> None:
    endpoint = torch.randn(sources.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    state = controlled_forward(velocity_of(flow), sources, linear_sigmas(10), gamma=1.0, endpoint=endpoint)
    torch.testing.assert_close(state, endpoint, atol=1e-12, rtol=0)


def test_rf_inversion_controls_the_chosen_share_of_steps() -> None:
    assert list(RFInversionSettings(start=0.0, stop=0.25).controlled_steps(28)) == list(range(0, 7))
    assert list(RFInversionSettings(start=0.1, stop=0.5).controlled_steps(10)) == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="start <= stop"):
        RFInversionSettings(start=0.5, stop=0.2)
    with pytest.raises(ValueError, match="gamma"):
        RFInversionSettings(gamma=1.5)


# -- RF-Edit -------------------------------------------------------------------------------------------


class RecordingSharing:
    """A FeatureSharing that logs the (step, stage) of every scope, in order."""

    def __init__(self) -> None:
        self.recorded: list[tuple[int, Stage]] = []
        self.injected: list[tuple[int, Stage]] = []

    @contextmanager
    def recording(self, step: int, stage: Stage) -> Iterator[None]:
        self.recorded.append((step, stage))
        yield

    @contextmanager
    def injecting(self, step: int, stage: Stage) -> Iterator[None]:
        self.injected.append((step, stage))
        yield


def test_rf_edit_with_inject_zero_is_rf_solver_inversion_plus_sampling(
        flow: GaussianMixtureFlow, translated: GaussianMixtureFlow, sources: Tensor) -> None:
    sigmas = linear_sigmas(12)
    source, target = velocity_of(flow), velocity_of(translated)
    expected = sample_rf_solver(target, invert(source, sample_rf_solver, sigmas, sources), sigmas)
    sharing = RecordingSharing()
    assert torch.equal(rf_edit(source, target, sources, sigmas, inject=0, sharing=sharing), expected)
    assert sharing.recorded == sharing.injected == []
    assert torch.equal(rf_edit(source, target, sources, sigmas, inject=0, sharing=NoSharing()), expected)


@pytest.mark.parametrize("inject", [1, 4, 12])
def test_rf_edit_injects_each_stored_interval_and_stage_once(flow: GaussianMixtureFlow, sources: Tensor,
                                                             inject: int) -> None:
    sharing = RecordingSharing()
    model = velocity_of(flow)
    rf_edit(model, model, sources, linear_sigmas(12), inject=inject, sharing=sharing)
    expected = {(step, stage) for step in range(inject) for stage in Stage}
    # Inversion reaches the noisiest intervals last; denoising starts with them.
    assert set(sharing.recorded) == set(sharing.injected) == expected
    assert len(sharing.recorded) == len(sharing.injected) == 2 * inject
    assert sharing.recorded[-1][0] == 0 and sharing.injected[0] == (0, Stage.MAIN)


def test_rf_edit_refuses_more_injected_steps_than_the_schedule_has(flow: GaussianMixtureFlow,
                                                                   sources: Tensor) -> None:
    model = velocity_of(flow)
    with pytest.raises(ValueError, match="inject must be between 0 and the number of steps"):
        rf_edit(model, model, sources, linear_sigmas(5), inject=6, sharing=NoSharing())
