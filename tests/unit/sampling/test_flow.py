"""sampling/flow.py: the timestep shift, FLUX's mu, FlowSampling's table and the noise interpolant."""

from __future__ import annotations

import math

import pytest
import torch

from sampling.flow import FlowSampling, flux_mu, noise_latent, sigma_view, time_snr_shift


def test_time_snr_shift_fixes_endpoints_and_moves_the_middle_towards_noise() -> None:
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    shifted = time_snr_shift(3.0, t)
    assert shifted[0] == 0.0 and shifted[-1] == 1.0
    assert shifted[2].item() == pytest.approx(0.75)  # 3 * 0.5 / (1 + 2 * 0.5)
    assert torch.all(shifted[1:3] > t[1:3])
    assert torch.equal(time_snr_shift(1.0, t), t)


def test_flux_mu_is_the_line_through_the_base_and_max_token_counts() -> None:
    assert flux_mu(256) == pytest.approx(0.5)
    assert flux_mu(4096) == pytest.approx(1.15)
    assert flux_mu(1024) == pytest.approx(0.5 + 0.65 * 768 / 3840)
    assert flux_mu(4096, base_shift=0.2, max_shift=2.0) == pytest.approx(2.0)


def test_flux_constructor_uses_the_pixel_token_count_and_comfyui_table_size() -> None:
    sampling = FlowSampling.flux(1024, 1024)
    assert sampling.shift == pytest.approx(math.exp(1.15))  # 1024 * 1024 / 256 = 4096 tokens
    assert sampling.timesteps == 10000
    assert FlowSampling.flux(512, 512).shift == pytest.approx(math.exp(flux_mu(1024)))
    assert FlowSampling.flux(1024, 1024, base_shift=0.5, max_shift=0.5).shift == pytest.approx(math.exp(0.5))


def test_sd3_constructor() -> None:
    assert FlowSampling.sd3() == FlowSampling(shift=3.0, multiplier=1000.0, timesteps=1000)
    assert FlowSampling.sd3(6.0).shift == 6.0


def test_sigmas_table_is_sigma_of_i_over_n() -> None:
    sampling = FlowSampling(shift=3.0)
    table = sampling.sigmas_table()
    assert table.shape == (1000,)
    assert torch.all(table[1:] > table[:-1])
    assert table[-1].item() == 1.0
    assert table[0].item() == pytest.approx(3 * 0.001 / (1 + 2 * 0.001))
    assert table[499].item() == pytest.approx(0.75)
    assert sampling.sigmas_table(10).shape == (10,)
    assert sampling.sigma_max == 1.0
    assert sampling.sigma_min == pytest.approx(table[0].item())


def test_timestep_scales_sigma_by_the_multiplier() -> None:
    assert FlowSampling().timestep(0.25) == 250.0
    assert FlowSampling(multiplier=1.0).timestep(0.25) == 0.25


@pytest.mark.parametrize(
    "kwargs", [{"shift": 0.0}, {"shift": -1.0}, {"shift": math.inf}, {"multiplier": 0.0}, {"timesteps": 1}]
)
def test_invalid_parameters_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="FlowSampling"):
        FlowSampling(**kwargs)


def test_flow_sampling_is_immutable() -> None:
    with pytest.raises(AttributeError):
        FlowSampling().shift = 2.0  # type: ignore[misc]


def test_noise_latent_interpolates_between_latent_and_noise() -> None:
    latent = torch.full((2, 3, 4, 4), 2.0)
    noise = torch.full((2, 3, 4, 4), -1.0)
    assert torch.equal(noise_latent(latent, noise, 1.0), noise)
    assert torch.equal(noise_latent(latent, noise, torch.tensor(0.0)), latent)
    assert torch.allclose(noise_latent(latent, noise, 0.25), torch.full_like(latent, 0.75 * 2.0 - 0.25))


def test_noise_latent_accepts_one_sigma_per_sample() -> None:
    latent = torch.zeros(2, 1, 2, 2)
    noise = torch.ones(2, 1, 2, 2)
    mixed = noise_latent(latent, noise, torch.tensor([0.2, 0.8]))
    assert torch.allclose(mixed[0], torch.full((1, 2, 2), 0.2))
    assert torch.allclose(mixed[1], torch.full((1, 2, 2), 0.8))


def test_sigma_view_rejects_a_sigma_that_does_not_match_the_batch() -> None:
    with pytest.raises(ValueError, match="one per sample"):
        sigma_view(torch.tensor([0.1, 0.2, 0.3]), torch.zeros(2, 4))
