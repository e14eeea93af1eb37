"""sampling/run.py: noising the start latent, running a sampler, and split schedules."""

from __future__ import annotations

import torch

from sampling.contract import StepInfo
from sampling.flow import FlowSampling
from sampling.run import sample
from sampling.schedules import compute_sigmas
from sampling.solvers import sample_euler, sample_heun
from tests.fixtures.gmm_flow import GaussianMixtureFlow

FLOW = GaussianMixtureFlow.two_modes()
MODEL = FLOW.velocity


def test_txt2img_starts_from_pure_noise() -> None:
    noise = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sigmas = torch.linspace(1, 0, 11, dtype=torch.float64)
    out = sample(MODEL, sample_euler, sigmas, noise, torch.zeros_like(noise))
    assert torch.equal(out, sample_euler(MODEL, noise, sigmas))


def test_img2img_starts_from_the_interpolant() -> None:
    noise = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    latent = torch.full((8, 2), 0.5, dtype=torch.float64)
    sigmas = compute_sigmas(FlowSampling(), "simple", 5, denoise=0.5).double()
    seen: list[StepInfo] = []
    sample(MODEL, sample_heun, sigmas, noise, latent, callback=seen.append)
    sigma = sigmas[0].item()
    assert torch.allclose(seen[0].x, sigma * noise + (1 - sigma) * latent)
    assert len(seen) == 5


def test_fewer_than_two_sigmas_returns_the_latent_unchanged() -> None:
    latent = torch.randn(3, 2)
    noise = torch.randn(3, 2)
    assert sample(MODEL, sample_euler, torch.zeros(0), noise, latent) is latent
    assert sample(MODEL, sample_euler, torch.tensor([0.7]), noise, latent) is latent


def test_a_split_schedule_continues_where_the_first_half_stopped() -> None:
    # ComfyUI's SplitSigmas + two SamplerCustomAdvanced: the second run adds no noise and must pick up
    # the exact state, which needs the first run to undo the (1 - sigma) scaling the second re-applies.
    noise = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    latent = torch.zeros_like(noise)
    sigmas = torch.linspace(1, 0, 9, dtype=torch.float64)
    whole = sample(MODEL, sample_euler, sigmas, noise, latent)
    first = sample(MODEL, sample_euler, sigmas[:5], noise, latent)
    second = sample(MODEL, sample_euler, sigmas[4:], torch.zeros_like(noise), first)
    assert torch.allclose(second, whole, atol=1e-12)
