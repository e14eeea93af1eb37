"""sampling/schedules.py: ComfyUI's scheduler names and maths on a flow model's sigma table."""

from __future__ import annotations

import math

import pytest
import torch

from sampling.flow import FlowSampling
from sampling.schedules import SCHEDULERS, compute_sigmas, get_scheduler, scheduler_names

# ComfyUI's KSampler.SCHEDULERS, in order: the combo a workflow's widget value indexes.
COMFYUI_SCHEDULERS = [
    "simple",
    "sgm_uniform",
    "karras",
    "exponential",
    "ddim_uniform",
    "beta",
    "normal",
    "linear_quadratic",
    "kl_optimal",
]
# Step counts for which every ComfyUI scheduler yields exactly steps + 1 sigmas on these tables.
STEP_COUNTS = [1, 2, 3, 4, 10, 20, 25, 50]
SAMPLINGS = {
    "plain": FlowSampling(),
    "sd3": FlowSampling.sd3(),
    "flux_1mp": FlowSampling.flux(1024, 1024),
}
LINEAR = FlowSampling()  # shift 1: table entry i is (i + 1) / 1000, so expected values are exact


def test_names_and_order_match_comfyui() -> None:
    assert scheduler_names() == COMFYUI_SCHEDULERS
    assert list(SCHEDULERS) == COMFYUI_SCHEDULERS


def test_registry_is_read_only() -> None:
    with pytest.raises(TypeError):
        SCHEDULERS["mine"] = SCHEDULERS["simple"]  # type: ignore[index]


@pytest.mark.parametrize("sampling_name", list(SAMPLINGS))
@pytest.mark.parametrize("name", COMFYUI_SCHEDULERS)
def test_every_schedule_descends_strictly_to_zero(name: str, sampling_name: str) -> None:
    sampling = SAMPLINGS[sampling_name]
    for steps in STEP_COUNTS:
        sigmas = SCHEDULERS[name](sampling, steps)
        assert sigmas.dtype == torch.float32
        assert sigmas.shape == (steps + 1,), (name, steps)
        assert sigmas[-1].item() == 0.0
        assert torch.all(sigmas[1:] < sigmas[:-1]), (name, steps, sigmas)
        assert sigmas[0].item() <= sampling.sigma_max
        if name != "ddim_uniform":  # DDIM's uniform skip starts one stride below the top, as in ComfyUI
            assert sigmas[0].item() == pytest.approx(sampling.sigma_max, abs=1e-6), (name, steps)


@pytest.mark.parametrize("name", [n for n in COMFYUI_SCHEDULERS if n != "linear_quadratic"])
def test_a_larger_shift_moves_every_sigma_up(name: str) -> None:
    low = SCHEDULERS[name](FlowSampling(shift=1.0), 10)
    high = SCHEDULERS[name](FlowSampling(shift=3.0), 10)
    assert torch.all(high[1:-1] > low[1:-1])
    assert high[0] >= low[0]


def test_linear_quadratic_ignores_the_shift() -> None:
    # Mochi's schedule is defined on t and only scaled by sigma_max, which is 1 for every shift.
    assert torch.equal(
        SCHEDULERS["linear_quadratic"](FlowSampling(shift=1.0), 10),
        SCHEDULERS["linear_quadratic"](FlowSampling(shift=3.0), 10),
    )


def _expect(name: str, steps: int, values: list[float]) -> None:
    assert torch.allclose(SCHEDULERS[name](LINEAR, steps), torch.tensor(values, dtype=torch.float32), atol=1e-6), (
        SCHEDULERS[name](LINEAR, steps)
    )


def test_simple_takes_evenly_strided_table_entries() -> None:
    _expect("simple", 4, [1.0, 0.75, 0.5, 0.25, 0.0])


def test_sgm_uniform_drops_the_last_of_steps_plus_one_timesteps() -> None:
    # timesteps linspace(1000, 1, 5)[:-1] = 1000, 750.25, 500.5, 250.75
    _expect("sgm_uniform", 4, [1.0, 0.75025, 0.5005, 0.25075, 0.0])


def test_normal_spans_sigma_max_to_sigma_min_then_zero() -> None:
    # timesteps linspace(1000, 1, 4) = 1000, 667, 334, 1
    _expect("normal", 4, [1.0, 0.667, 0.334, 0.001, 0.0])


def test_karras_is_uniform_in_sigma_to_the_one_over_rho() -> None:
    top, bottom = 1.0, 0.001 ** (1 / 7)
    expected = [(top + r * (bottom - top)) ** 7 for r in (0, 1 / 3, 2 / 3, 1)] + [0.0]
    _expect("karras", 4, expected)


def test_exponential_is_uniform_in_log_sigma() -> None:
    _expect("exponential", 4, [1.0, 0.1, 0.01, 0.001, 0.0])


def test_ddim_uniform_walks_the_table_from_index_one() -> None:
    # stride 1000 // 4 = 250: table indices 751, 501, 251, 1
    _expect("ddim_uniform", 4, [0.752, 0.502, 0.252, 0.002, 0.0])


def test_ddim_uniform_keeps_comfyuis_extra_step_when_steps_do_not_divide_the_table() -> None:
    # stride 1000 // 7 = 142 visits indices 1, 143, ..., 995: eight sigmas plus 0, as ComfyUI
    assert SCHEDULERS["ddim_uniform"](LINEAR, 7).shape == (9,)
    assert compute_sigmas(LINEAR, "ddim_uniform", 7).shape == (8,)  # BasicScheduler keeps the last steps + 1


def test_beta_follows_the_u_shaped_quantiles() -> None:
    sigmas = SCHEDULERS["beta"](LINEAR, 3)
    assert sigmas[0].item() == 1.0
    # Beta(0.6, 0.6) is symmetric, so the 1/3 and 2/3 quantiles mirror each other on the table.
    assert sigmas[1].item() + sigmas[2].item() == pytest.approx(1.001, abs=1e-6)
    # The U-shaped density puts the inner points nearer the ends than a uniform grid would.
    assert sigmas[1].item() > 2 / 3 + 0.01 and sigmas[2].item() < 1 / 3 - 0.01


def test_beta_merges_steps_that_land_on_the_same_table_entry() -> None:
    sigmas = SCHEDULERS["beta"](LINEAR, 1000)
    assert len(sigmas) < 1001
    assert torch.all(sigmas[1:] < sigmas[:-1])


def test_linear_quadratic_matches_mochis_schedule() -> None:
    # t: linear 0, 0.0125 then the quadratic through (2, 0.025) to 1: 0.025, 0.275
    _expect("linear_quadratic", 4, [1.0, 0.9875, 0.975, 0.725, 0.0])
    _expect("linear_quadratic", 1, [1.0, 0.0])


def test_kl_optimal_is_uniform_in_arctan_sigma() -> None:
    angles = [math.atan(1.0) + r * (math.atan(0.001) - math.atan(1.0)) for r in (0, 1 / 3, 2 / 3, 1)]
    _expect("kl_optimal", 4, [math.tan(a) for a in angles] + [0.0])


@pytest.mark.parametrize("name", COMFYUI_SCHEDULERS)
def test_partial_denoise_keeps_the_tail_of_a_longer_schedule(name: str) -> None:
    sampling = FlowSampling.sd3()
    assert torch.equal(compute_sigmas(sampling, name, 10, denoise=0.5), SCHEDULERS[name](sampling, 20)[-11:])
    assert torch.equal(compute_sigmas(sampling, name, 10, denoise=0.3), SCHEDULERS[name](sampling, 33)[-11:])
    partial = compute_sigmas(sampling, name, 10, denoise=0.5)
    assert partial.shape == (11,) and partial[0] < sampling.sigma_max


def test_full_and_zero_denoise() -> None:
    sampling = FlowSampling.sd3()
    assert torch.equal(compute_sigmas(sampling, "simple", 8), SCHEDULERS["simple"](sampling, 8))
    assert torch.equal(compute_sigmas(sampling, "simple", 8, denoise=1.0), SCHEDULERS["simple"](sampling, 8))
    for denoise in (0.0, -0.5):
        empty = compute_sigmas(sampling, "simple", 8, denoise=denoise)
        assert empty.shape == (0,) and empty.dtype == torch.float32


def test_unknown_scheduler_error_names_it_and_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError) as caught:
        compute_sigmas(FlowSampling(), "karas", 10)
    message = str(caught.value)
    assert "'karas'" in message
    assert all(name in message for name in COMFYUI_SCHEDULERS)
    with pytest.raises(ValueError, match="karas"):
        get_scheduler("karas")


@pytest.mark.parametrize("steps", [0, -3, 2.5, True])
def test_invalid_step_counts_are_rejected(steps: object) -> None:
    with pytest.raises(ValueError, match="steps"):
        compute_sigmas(FlowSampling(), "simple", steps)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="steps"):
        SCHEDULERS["karras"](FlowSampling(), steps)  # type: ignore[arg-type]
