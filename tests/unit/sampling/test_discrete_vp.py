"""The VP -> flow conversion against its definition: a model that predicts exactly right must give
exactly the flow velocity `noise - x0`, for eps and for v prediction, images and video latents."""

from __future__ import annotations

import pytest
import torch

from sampling.discrete_vp import DiscreteVP


def _batch(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.randn(shape, generator=generator, dtype=torch.float64)
    noise = torch.randn(shape, generator=generator, dtype=torch.float64)
    s = torch.rand(shape[0], generator=generator, dtype=torch.float64) * 0.9 + 0.05
    return x0, noise, s


def _exact_output(schedule: DiscreteVP, x0: torch.Tensor, noise: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """What a perfect VP model outputs, from the VP definitions (not from the converter)."""
    sigma = (s / (1 - s)).reshape(-1, *([1] * (x0.ndim - 1)))
    alpha_bar = 1 / (1 + sigma**2)  # the a_t whose sqrt((1 - a_t) / a_t) is sigma
    if schedule.prediction == "eps":
        return noise
    return alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * x0


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("shape", [(3, 4, 8, 8), (2, 16, 3, 4, 4)], ids=["image", "video"])
def test_a_perfect_model_gives_the_exact_flow_velocity(prediction: str, shape: tuple[int, ...]) -> None:
    schedule = DiscreteVP.scaled_linear(prediction)
    x0, noise, s = _batch(shape)
    x = (1 - s.reshape(-1, *([1] * (len(shape) - 1)))) * x0 + s.reshape(-1, *([1] * (len(shape) - 1))) * noise
    output = _exact_output(schedule, x0, noise, s)
    torch.testing.assert_close(schedule.velocity(output, x, s), noise - x0, atol=1e-10, rtol=1e-10)


def test_the_model_reads_the_vp_image_at_the_matching_timestep() -> None:
    schedule = DiscreteVP.scaled_linear()
    x0, noise, s = _batch((4, 4, 2, 2), seed=1)
    view = s.reshape(-1, 1, 1, 1)
    vp, timestep = schedule.model_input((1 - view) * x0 + view * noise, s)
    sigma = s / (1 - s)
    alpha_bar = (1 / (1 + sigma**2)).reshape(-1, 1, 1, 1)
    torch.testing.assert_close(vp, alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise)
    # ComfyUI's rule: the timestep of the table entry nearest in log sigma, a whole number.
    log_table = ((1 - schedule.alphas_cumprod) / schedule.alphas_cumprod).sqrt().log()
    distances = (log_table.reshape(1, -1) - sigma.log().reshape(-1, 1)).abs()
    assert torch.equal(timestep, distances.argmin(dim=1).double())
    assert torch.equal(timestep, timestep.round())


def test_sigmas_between_table_entries_interpolate_in_log_sigma() -> None:
    schedule = DiscreteVP.scaled_linear()
    table = schedule.sigmas
    halfway = schedule.sigma_at(torch.tensor([10.5, 998.25]))
    torch.testing.assert_close(halfway[0], (table[10].log() * 0.5 + table[11].log() * 0.5).exp())
    torch.testing.assert_close(halfway[1], (table[998].log() * 0.75 + table[999].log() * 0.25).exp())
    torch.testing.assert_close(schedule.sigma_at(torch.tensor([0.0, 999.0])), table[[0, 999]])


def test_flow_times_are_the_same_noise_levels_and_pure_noise_is_refused() -> None:
    schedule = DiscreteVP.scaled_linear()
    sigmas = torch.tensor([14.6, 1.0, 0.03, 0.0])
    torch.testing.assert_close(schedule.to_flow(sigmas), torch.tensor([14.6 / 15.6, 0.5, 0.03 / 1.03, 0.0]))
    assert schedule.sigma_min == pytest.approx(0.0292, abs=1e-4) and schedule.sigma_max == pytest.approx(14.61, abs=0.01)
    with pytest.raises(ValueError, match="pure noise"):
        schedule.model_input(torch.zeros(1, 4, 2, 2), torch.tensor([1.0]))


def test_table_sigmas_map_to_their_own_timesteps_and_flow_times_rise_to_below_one() -> None:
    schedule = DiscreteVP.scaled_linear()
    indices = torch.tensor([0, 1, 250, 999])
    torch.testing.assert_close(schedule.timestep(schedule.sigmas[indices]), indices.to(torch.float64))
    flow = schedule.flow_sigmas
    assert bool((flow[1:] > flow[:-1]).all()) and 0 < float(flow[0]) and float(flow[-1]) < 1
    # SD's sigma_max is about 14.6 (ComfyUI's table): s = 14.6 / 15.6.
    assert float(schedule.sigmas[-1]) == pytest.approx(14.61, abs=0.01)


def test_a_table_that_does_not_decrease_is_refused() -> None:
    with pytest.raises(ValueError, match="decrease"):
        DiscreteVP(torch.tensor([0.5, 0.9]))
    with pytest.raises(ValueError, match="prediction"):
        DiscreteVP(torch.tensor([0.9, 0.5]), "x0")  # type: ignore[arg-type]


def test_a_run_starts_where_comfyui_starts_it() -> None:
    """Full denoise (from the noisiest table level) scales the noise to a unit-variance VP image, sqrt(1 + sigma^2);
    a partial one noises the latent by sigma, which in flow time is the flow interpolant."""
    schedule = DiscreteVP.scaled_linear()
    latent, noise = torch.full((1, 4, 2, 2), 0.5), torch.ones(1, 4, 2, 2)
    top = schedule.sigma_max
    start = schedule.noise_latent(latent, noise, torch.tensor(top / (1 + top)))
    torch.testing.assert_close(start, (latent + (1 + top**2) ** 0.5 * noise) / (1 + top))
    partial = schedule.noise_latent(latent, noise, torch.tensor(0.5))  # sigma 1
    torch.testing.assert_close(partial, 0.5 * latent + 0.5 * noise)
    with pytest.raises(ValueError, match="pure noise"):
        schedule.noise_latent(latent, noise, torch.tensor(1.0))
