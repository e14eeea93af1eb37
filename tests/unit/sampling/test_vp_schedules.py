"""Schedules on SD's discrete VP table: the sigmas ComfyUI gives, returned to the samplers as flow times.

"karras" and "exponential" are checked against diffusers' EulerDiscreteScheduler, which builds them from the
same table; "simple" and "normal" against ComfyUI's rules applied here to a table computed from the betas.
Zero terminal SNR (ModelSamplingDiscrete's zsnr) against Lin et al. 2023's algorithm on ComfyUI's float32 table.
"""

from __future__ import annotations

import math

import pytest
import torch

from sampling.discrete_vp import DiscreteVP
from sampling.schedules import compute_sigmas, get_scheduler
from sampling.zero_snr import TERMINAL_ALPHA_BAR, zero_terminal_snr

STEPS = [1, 4, 20, 33]


def sd_table() -> torch.Tensor:
    """SD's sigmas, float32 as ComfyUI holds them: betas linear in their square root from 0.00085 to 0.012."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1 - betas, dim=0)
    return ((1 - alphas_cumprod) / alphas_cumprod).sqrt().float()


def diffusers_sigmas(steps: int, *, float64_table: bool, **option: bool) -> torch.Tensor:
    """diffusers' sigmas; its own table is float32, where `1 - alpha_bar` loses about 5 digits at the low end, so
    `float64_table` gives it the float64 table ComfyUI starts from, leaving only the schedule maths to compare."""
    from diffusers import EulerDiscreteScheduler

    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", **option)
    if float64_table:
        scheduler.alphas_cumprod = DiscreteVP.scaled_linear().alphas_cumprod.clone()
    scheduler.set_timesteps(steps)
    return scheduler.sigmas.float()


# diffusers takes the ends from the timesteps it picked, which for one step is only timestep 0; ComfyUI (and
# Flowmill) from the table, so one step is [sigma_max, 0] (checked below).
@pytest.mark.parametrize("steps", [2, 4, 20, 33])
@pytest.mark.parametrize(("name", "option"), [("karras", "use_karras_sigmas"),
                                              ("exponential", "use_exponential_sigmas")])
def test_karras_and_exponential_match_diffusers_on_the_sd_table(name: str, option: str, steps: int) -> None:
    ours = get_scheduler(name)(DiscreteVP.scaled_linear(), steps)
    theirs = diffusers_sigmas(steps, float64_table=True, **{option: True})
    assert ours.shape == theirs.shape == (steps + 1,) and float(ours[-1]) == 0.0
    # ComfyUI rounds the table to float32 before taking its ends; diffusers keeps them in float64.
    torch.testing.assert_close(ours, theirs, rtol=2e-7, atol=0)
    torch.testing.assert_close(ours, diffusers_sigmas(steps, float64_table=False, **{option: True}), rtol=5e-5, atol=0)
    assert float(ours[0]) == pytest.approx(14.6146, abs=1e-4)


@pytest.mark.parametrize("name", ["karras", "exponential"])
def test_one_karras_or_exponential_step_goes_from_the_top_of_the_table_to_zero(name: str) -> None:
    assert get_scheduler(name)(DiscreteVP.scaled_linear(), 1).tolist() == [float(sd_table()[-1]), 0.0]


@pytest.mark.parametrize("steps", STEPS)
def test_simple_walks_the_table_down_by_even_strides(steps: int) -> None:
    table = sd_table()
    stride = 1000 / steps
    expected = [float(table[-(1 + int(i * stride))]) for i in range(steps)] + [0.0]
    assert get_scheduler("simple")(DiscreteVP.scaled_linear(), steps).tolist() == expected


@pytest.mark.parametrize("steps", STEPS)
def test_normal_spaces_timesteps_evenly_and_interpolates_log_sigma(steps: int) -> None:
    log_table = sd_table().double().log()
    expected = []
    for timestep in torch.linspace(999, 0, steps, dtype=torch.float64).tolist():
        low, high = math.floor(timestep), math.ceil(timestep)
        weight = timestep - low
        expected.append(math.exp((1 - weight) * float(log_table[low]) + weight * float(log_table[high])))
    expected.append(0.0)
    got = get_scheduler("normal")(DiscreteVP.scaled_linear(), steps)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float32), rtol=1e-6, atol=0)
    if steps > 1:  # the ends are table entries: sigma_max and sigma_min
        assert float(got[0]) == float(sd_table()[-1]) and float(got[-2]) == float(sd_table()[0])


@pytest.mark.parametrize("name", ["simple", "normal", "karras", "exponential", "sgm_uniform", "beta", "ddim_uniform"])
@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_compute_sigmas_returns_the_schedule_as_flow_times(name: str, prediction: str) -> None:
    schedule = DiscreteVP.scaled_linear(prediction)
    sigmas = get_scheduler(name)(schedule, 10)
    flow = compute_sigmas(schedule, name, 10)
    wide = sigmas.double()
    torch.testing.assert_close(flow, (wide / (1 + wide)).float(), rtol=0, atol=0)
    assert bool((flow < 1).all()) and float(flow[-1]) == 0.0 and flow.dtype == torch.float32


def test_denoise_keeps_the_low_noise_tail_in_flow_time() -> None:
    schedule = DiscreteVP.scaled_linear()
    full = get_scheduler("karras")(schedule, 8)
    tail = compute_sigmas(schedule, "karras", 4, denoise=0.5)
    torch.testing.assert_close(tail, (full[-5:].double() / (1 + full[-5:].double())).float(), rtol=0, atol=0)


def test_zero_terminal_snr_rescales_the_float32_table_as_lin_et_al() -> None:
    """Algorithm 1 of Lin et al. 2023 on sqrt(alpha_bar), with ComfyUI's tiny final alpha_bar for zero."""
    table = sd_table()
    root = (1 / (table * table + 1)).sqrt()
    root = (root - root[-1]) * (root[0] / (root[0] - root[-1]))
    alpha_bar = root**2
    alpha_bar[-1] = 4.8973451890853435e-08
    expected = ((1 - alpha_bar) / alpha_bar).sqrt()
    rescaled = zero_terminal_snr(DiscreteVP.scaled_linear("v"))
    assert rescaled.prediction == "v" and TERMINAL_ALPHA_BAR == 4.8973451890853435e-08
    torch.testing.assert_close(rescaled.sigmas.float(), expected, rtol=0, atol=0)
    # The first level is kept, up to float32's cancellation in 1 - alpha_bar (ComfyUI's too).
    assert rescaled.sigma_min == pytest.approx(float(table[0]), rel=1e-4)
    assert rescaled.sigma_max == pytest.approx(4518.9, abs=0.5)  # (almost) pure noise at the last timestep
    flow = compute_sigmas(rescaled, "karras", 5)
    assert 0.9997 < float(flow[0]) < 1.0  # still a level the VP model can be called at
