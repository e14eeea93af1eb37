"""sampling/inversion.py on the analytic Gaussian-mixture flow: round trips, schedules, resuming."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from torch import Tensor

from sampling.inversion import inversion_schedule, invert, resume_noise
from sampling.run import sample
from sampling.samplers import get_sampler, inversion_refusal
from tests.fixtures.gmm_flow import GaussianMixtureFlow
from tests.unit.sampling.oracle import CallCounter, median_distance, uniform_sigmas

STEP_COUNTS = [8, 16, 32, 64]


@pytest.fixture(scope="module")
def data(flow: GaussianMixtureFlow) -> Tensor:
    return flow.sample_data(256, torch.Generator().manual_seed(0))


def round_trip_error(name: str, steps: int, flow: GaussianMixtureFlow, data: Tensor) -> tuple[float, int]:
    """(median distance of invert-then-regenerate to the data, model calls for both directions)."""
    sampler, model = get_sampler(name), CallCounter(flow.velocity)
    sigmas = uniform_sigmas(steps)
    with torch.inference_mode():
        noise = invert(model, sampler, sigmas, data)
        regenerated = sampler(model, noise, sigmas)
    return median_distance(regenerated, data), model.calls


@pytest.mark.parametrize("name", ["euler", "rf_solver", "heun"])
def test_round_trip_error_falls_with_steps(name: str, flow: GaussianMixtureFlow, data: Tensor) -> None:
    errors = [round_trip_error(name, steps, flow, data)[0] for steps in STEP_COUNTS]
    assert all(later < earlier for earlier, later in pairwise(errors)), errors


def test_rf_solver_round_trips_ten_times_tighter_than_euler_at_equal_calls(
    flow: GaussianMixtureFlow, data: Tensor
) -> None:
    for steps in STEP_COUNTS:
        rf_error, rf_calls = round_trip_error("rf_solver", steps, flow, data)
        euler_error, euler_calls = round_trip_error("euler", 2 * steps, flow, data)
        assert rf_calls == euler_calls == 4 * steps
        assert rf_error * 10 <= euler_error, (steps, rf_error, euler_error)


def test_inversion_recovers_the_noise_that_made_a_sample(flow: GaussianMixtureFlow) -> None:
    noise = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sigmas = uniform_sigmas(64)
    sampler = get_sampler("rf_solver")
    with torch.inference_mode():
        recovered = invert(flow.velocity, sampler, sigmas, sampler(flow.velocity, noise, sigmas))
    assert median_distance(recovered, noise) < 1e-3


def test_a_partial_inversion_resumes_through_the_sampling_entry_point(flow: GaussianMixtureFlow, data: Tensor) -> None:
    # img2img-style: invert to sigma 0.6 only, then sample from there with the same latent.
    sigmas = torch.linspace(0.6, 0.0, 25, dtype=torch.float64)
    sampler = get_sampler("rf_solver")
    state = invert(flow.velocity, sampler, sigmas, data)
    noise = resume_noise(state, data, float(sigmas[0]))
    regenerated = sample(flow.velocity, sampler, sigmas, noise, data)
    assert median_distance(regenerated, data) < 1e-4
    # and the start of sampling is the inverted state itself
    torch.testing.assert_close(0.6 * noise + 0.4 * data, state)


def test_inversion_schedules_are_checked() -> None:
    assert inversion_schedule(torch.tensor([1.0, 0.5, 0.0])).tolist() == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="end at sigma 0"):
        inversion_schedule(torch.tensor([1.0, 0.5]))
    with pytest.raises(ValueError, match="strictly falling"):
        inversion_schedule(torch.tensor([0.5, 1.0, 0.0]))
    with pytest.raises(ValueError, match="at least two"):
        inversion_schedule(torch.tensor([0.0]))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        resume_noise(torch.zeros(2), torch.zeros(2), 0.0)


def test_only_deterministic_reversible_samplers_invert() -> None:
    assert inversion_refusal(get_sampler("rf_solver")) is None
    assert inversion_refusal(get_sampler("flowturbo", heun_steps=1)) is None
    assert "stochastic or denoise-only" in inversion_refusal(get_sampler("euler_ancestral"))
    assert "use one of euler, heun, rf_solver, flowturbo" in inversion_refusal(get_sampler("dpmpp_2m"))
    assert "refiner" in inversion_refusal(get_sampler("flowturbo", refiner_steps=2, refiner=None))
