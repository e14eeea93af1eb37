"""sampling/guidance.py: classifier-free guidance over velocity models."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from sampling.contract import denoised_from
from sampling.guidance import batched_cfg_velocity, cfg_velocity
from sampling.solvers import sample_euler
from tests.fixtures.gmm_flow import GaussianMixtureFlow


def test_the_x0_prediction_of_a_velocity_is_the_exact_posterior_mean() -> None:
    flow = GaussianMixtureFlow.two_modes()
    x = torch.randn(7, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sigma = torch.linspace(0.1, 0.9, 7, dtype=torch.float64)
    # x0 = x - sigma v must equal E[x0 | x_t] computed independently by the fixture
    denoised = denoised_from(x, sigma[:, None], flow.velocity(x, sigma))
    assert torch.allclose(denoised, flow.denoised(x, sigma), atol=1e-12)


def test_guiding_velocities_guides_the_x0_predictions_the_same_way() -> None:
    # ComfyUI applies CFG to x0 predictions; the rule is affine, so guiding v gives the same x0.
    mixture = GaussianMixtureFlow.two_modes()
    right = GaussianMixtureFlow.create(means=[[2.0, 1.0]], stds=[0.3], weights=[1.0])
    x = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    sigma = torch.full((5,), 0.6, dtype=torch.float64)
    guided_x0 = denoised_from(x, 0.6, cfg_velocity(right.velocity, mixture.velocity, 3.0)(x, sigma))
    x0_cond, x0_uncond = right.denoised(x, sigma), mixture.denoised(x, sigma)
    torch.testing.assert_close(guided_x0, x0_uncond + 3.0 * (x0_cond - x0_uncond))


class Counter:
    """A constant velocity model that counts its calls."""

    def __init__(self, value: float) -> None:
        self.value = value
        self.calls = 0

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        self.calls += 1
        return torch.full_like(x, self.value)


def test_scale_one_never_evaluates_the_unconditional_model() -> None:
    cond, uncond = Counter(1.0), Counter(-1.0)
    sample_euler(cfg_velocity(cond, uncond, 1.0), torch.ones(2, 3), torch.linspace(1, 0, 6))
    assert cond.calls == 5
    assert uncond.calls == 0


def test_missing_unconditional_model_means_plain_conditional() -> None:
    cond = Counter(1.0)
    guided = cfg_velocity(cond, None, 4.0)
    assert torch.equal(guided(torch.zeros(1, 2), torch.ones(1)), torch.ones(1, 2))
    assert cond.calls == 1


def test_guidance_extrapolates_from_uncond_towards_cond() -> None:
    cond, uncond = Counter(1.0), Counter(-1.0)
    guided = cfg_velocity(cond, uncond, 3.5)
    out = guided(torch.zeros(2, 2), torch.ones(2))
    assert torch.allclose(out, torch.full((2, 2), -1.0 + 3.5 * 2.0))
    assert (cond.calls, uncond.calls) == (1, 1)
    sample_euler(guided, torch.ones(2, 3), torch.linspace(1, 0, 4))
    assert (cond.calls, uncond.calls) == (4, 4)


def test_guidance_on_the_mixture_pushes_samples_into_the_conditioned_mode() -> None:
    # "Prompt" = the right-hand component alone; unconditional = the whole mixture (techniques.md 9).
    mixture = GaussianMixtureFlow.two_modes()
    right = GaussianMixtureFlow.create(means=[[2.0, 1.0]], stds=[0.3], weights=[1.0])
    noise = torch.randn(1000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    sigmas = torch.linspace(1, 0, 25, dtype=torch.float64)

    def right_fraction(scale: float) -> float:
        guided = cfg_velocity(right.velocity, mixture.velocity, scale)
        with torch.inference_mode():
            return (mixture.nearest_mode(sample_euler(guided, noise, sigmas)) == 1).double().mean().item()

    assert right_fraction(0.0) == pytest.approx(0.7, abs=0.05)  # scale 0 is the unconditional model
    assert right_fraction(1.0) > 0.99


def test_batched_guidance_equals_two_separate_calls_in_one_call() -> None:
    calls: list[int] = []
    offsets = torch.tensor([0.5, -0.25])  # what the conditional / unconditional "models" add

    def paired(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        half = x.shape[0] // 2
        return x * sigma[:, None] + torch.repeat_interleave(offsets, half)[:, None]

    def cond(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return x * sigma[:, None] + offsets[0]

    def uncond(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return x * sigma[:, None] + offsets[1]

    x, sigma = torch.randn(3, 4), torch.full((3,), 0.7)
    batched = batched_cfg_velocity(paired, 4.0)(x, sigma)
    torch.testing.assert_close(batched, cfg_velocity(cond, uncond, 4.0)(x, sigma))
    assert calls == [6]
