"""Euler and Heun on the analytic Gaussian-mixture flow: convergence order, distribution, contract; the registry."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from torch import Tensor

from sampling.contract import StepInfo
from sampling.samplers import SAMPLERS, ConfiguredSampler, get_sampler, sampler_names, sampler_spec
from sampling.solvers import sample_euler, sample_heun
from tests.fixtures.gmm_flow import GaussianMixtureFlow
from tests.unit.sampling.oracle import fitted_order, median_distance, uniform_sigmas

STEP_COUNTS = [8, 16, 32, 64]


def global_errors(sampler, flow: GaussianMixtureFlow, noise: Tensor, reference: Tensor) -> list[float]:
    """Median distance to the reference endpoint for each step count."""
    with torch.inference_mode():
        return [median_distance(sampler(flow.velocity, noise, uniform_sigmas(steps)), reference)
                for steps in STEP_COUNTS]


def test_euler_is_first_order(flow: GaussianMixtureFlow, noise: Tensor, reference: Tensor) -> None:
    errors = global_errors(sample_euler, flow, noise, reference)
    assert all(later < earlier for earlier, later in pairwise(errors)), errors
    assert 0.85 < fitted_order(STEP_COUNTS, errors) < 1.15, errors


def test_heun_is_second_order(flow: GaussianMixtureFlow, noise: Tensor, reference: Tensor) -> None:
    errors = global_errors(sample_heun, flow, noise, reference)
    assert all(later < earlier for earlier, later in pairwise(errors)), errors
    assert 1.8 < fitted_order(STEP_COUNTS, errors) < 2.3, errors


def test_heun_beats_euler_at_equal_model_calls(
    flow: GaussianMixtureFlow, noise: Tensor, reference: Tensor
) -> None:
    # Heun with n steps makes 2n - 1 calls; Euler with 2n steps makes 2n.
    euler = global_errors(sample_euler, flow, noise, reference)
    heun = global_errors(sample_heun, flow, noise, reference)
    for i in range(len(STEP_COUNTS) - 1):
        assert heun[i] < euler[i + 1], (heun, euler)
    assert heun[-2] < euler[-1] / 10, (heun, euler)


@pytest.mark.parametrize("name", ["euler", "heun"])
def test_sampling_lands_on_the_mixture(name: str, flow: GaussianMixtureFlow) -> None:
    noise = torch.randn(4000, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.inference_mode():
        out = get_sampler(name)(flow.velocity, noise, uniform_sigmas(48))
    modes = flow.nearest_mode(out)
    right = (modes == 1).double().mean().item()
    assert right == pytest.approx(0.7, abs=0.03)  # 4 standard errors of a 4000-sample fraction
    for k in (0, 1):
        members = out[modes == k]
        assert torch.allclose(members.mean(0), flow.means[k], atol=0.05)
        assert members.std(0).tolist() == pytest.approx([0.3, 0.3], abs=0.03)


@pytest.mark.parametrize("name", ["euler", "heun"])
def test_a_point_mass_is_reached_exactly(name: str) -> None:
    # Data concentrated at one point makes every trajectory a straight line: any step size is exact,
    # which pins the sign conventions (v = noise - x0, x0 = x - sigma v).
    flow = GaussianMixtureFlow.create(means=[[1.5, -0.5]], stds=[0.0], weights=[1.0])
    noise = torch.randn(5, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for sigmas in ([1.0, 0.0], [1.0, 0.5, 0.2, 0.0]):
        out = get_sampler(name)(flow.velocity, noise, torch.tensor(sigmas, dtype=torch.float64))
        assert torch.allclose(out, flow.means[0].expand(5, 2), atol=1e-12), sigmas


def counting(model):
    calls: list[Tensor] = []

    def wrapped(x: Tensor, sigma: Tensor) -> Tensor:
        calls.append(sigma.clone())
        return model(x, sigma)

    return wrapped, calls


def test_model_calls_and_sigma_shape(flow: GaussianMixtureFlow) -> None:
    noise = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    sigmas = torch.tensor([1.0, 0.6, 0.3, 0.0], dtype=torch.float64)
    euler, euler_calls = counting(flow.velocity)
    sample_euler(euler, noise, sigmas)
    assert [c.tolist() for c in euler_calls] == [[1.0] * 3, [0.6] * 3, [0.3] * 3]
    heun, heun_calls = counting(flow.velocity)
    sample_heun(heun, noise, sigmas)
    # predictor and corrector on the first two steps; the step into 0 is Euler's single call
    assert [c[0].item() for c in heun_calls] == [1.0, 0.6, 0.6, 0.3, 0.3]


def test_heuns_last_step_to_zero_is_an_euler_step(flow: GaussianMixtureFlow) -> None:
    noise = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    one_step = torch.tensor([0.4, 0.0], dtype=torch.float64)
    assert torch.equal(sample_heun(flow.velocity, noise, one_step), sample_euler(flow.velocity, noise, one_step))


@pytest.mark.parametrize("name", ["euler", "heun"])
def test_callback_reports_each_step_once(name: str, flow: GaussianMixtureFlow) -> None:
    noise = torch.randn(2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    sigmas = uniform_sigmas(5)
    seen: list[StepInfo] = []
    get_sampler(name)(flow.velocity, noise, sigmas, callback=seen.append)
    assert [info.index for info in seen] == list(range(5))
    assert all(info.total == 5 for info in seen)
    assert [info.sigma.item() for info in seen] == pytest.approx(sigmas[:-1].tolist())
    assert [info.sigma_next.item() for info in seen] == pytest.approx(sigmas[1:].tolist())
    assert torch.equal(seen[0].x, noise)
    assert torch.allclose(seen[0].denoised, flow.denoised(noise, 1.0))


@pytest.mark.parametrize("name", ["euler", "heun"])
def test_samplers_are_pure(name: str, flow: GaussianMixtureFlow) -> None:
    noise = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    before = noise.clone()
    sigmas = uniform_sigmas(6)
    first = get_sampler(name)(flow.velocity, noise, sigmas)
    second = get_sampler(name)(flow.velocity, noise, sigmas)
    assert torch.equal(noise, before)
    assert torch.equal(first, second)


@pytest.mark.parametrize("name", ["euler", "heun"])
def test_no_steps_returns_the_input(name: str, flow: GaussianMixtureFlow) -> None:
    noise = torch.randn(4, 2, dtype=torch.float64)
    assert torch.equal(get_sampler(name)(flow.velocity, noise, torch.tensor([0.5])), noise)
    with pytest.raises(ValueError, match="1-D"):
        get_sampler(name)(flow.velocity, noise, torch.ones(2, 2))


def test_registry() -> None:
    assert sampler_names() == ["euler", "euler_ancestral", "heun", "dpmpp_2m", "rf_solver", "flowturbo"]
    assert sampler_spec("heun").function is sample_heun
    assert [name for name in SAMPLERS if SAMPLERS[name].invertible] == ["euler", "heun", "rf_solver", "flowturbo"]
    with pytest.raises(TypeError):
        SAMPLERS["mine"] = SAMPLERS["euler"]  # type: ignore[index]
    with pytest.raises(ValueError) as caught:
        get_sampler("eular")
    assert "'eular'" in str(caught.value) and "euler" in str(caught.value) and "heun" in str(caught.value)


def test_a_configured_sampler_passes_its_options(flow: GaussianMixtureFlow) -> None:
    noise = torch.randn(3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    sigmas = uniform_sigmas(6)
    configured = get_sampler("flowturbo", heun_steps=2, pseudo_steps=4)
    assert isinstance(configured, ConfiguredSampler)
    assert dict(configured.options) == {"heun_steps": 2, "pseudo_steps": 4}
    direct = sampler_spec("flowturbo").function(flow.velocity, noise, sigmas, heun_steps=2, pseudo_steps=4)
    assert torch.equal(configured(flow.velocity, noise, sigmas), direct)
    with pytest.raises(TypeError):
        configured.options["heun_steps"] = 3  # type: ignore[index]
    with pytest.raises(TypeError, match="unexpected keyword"):
        get_sampler("euler", eta=0.5)(flow.velocity, noise, sigmas)
