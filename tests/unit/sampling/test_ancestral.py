"""sampling/ancestral.py: the flow form of Euler ancestral on the analytic Gaussian-mixture flow."""

from __future__ import annotations

import pytest
import torch

from sampling.ancestral import ancestral_split, sample_euler_ancestral
from sampling.solvers import sample_euler
from tests.fixtures.gmm_flow import GaussianMixtureFlow
from tests.unit.sampling.oracle import uniform_sigmas

FLOW = GaussianMixtureFlow.two_modes()


def test_eta_zero_is_plain_euler() -> None:
    noise = torch.randn(32, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigmas = uniform_sigmas(10)
    # the last step's x0 prediction equals Euler's step into sigma 0, up to rounding
    torch.testing.assert_close(sample_euler_ancestral(FLOW.velocity, noise, sigmas, eta=0.0),
                               sample_euler(FLOW.velocity, noise, sigmas), rtol=0, atol=1e-12)


@pytest.mark.parametrize("eta", [0.3, 1.0])
def test_the_renoised_state_has_the_flows_marginal(eta: float) -> None:
    # From an exact sample of the sigma-marginal, one ancestral step must land on the sigma_next marginal:
    # for a point mass at m, (1 - s) m + s * noise, so mean (1 - s) m and per-coordinate std s.
    flow = GaussianMixtureFlow.create(means=[[1.0, -2.0]], stds=[0.0], weights=[1.0])
    generator = torch.Generator().manual_seed(1)
    sigma, sigma_next = 0.8, 0.5
    start = (1 - sigma) * flow.means[0] + sigma * torch.randn(20000, 2, generator=generator, dtype=torch.float64)
    out = sample_euler_ancestral(flow.velocity, start, torch.tensor([sigma, sigma_next], dtype=torch.float64),
                                 generator=generator, eta=eta)
    assert torch.allclose(out.mean(0), (1 - sigma_next) * flow.means[0], atol=0.02)
    assert out.std(0).tolist() == pytest.approx([sigma_next, sigma_next], abs=0.01)


def test_ancestral_sampling_lands_on_the_mixture() -> None:
    generator = torch.Generator().manual_seed(2)
    noise = torch.randn(4000, 2, generator=generator, dtype=torch.float64)
    with torch.inference_mode():
        out = sample_euler_ancestral(FLOW.velocity, noise, uniform_sigmas(60), generator=generator)
    modes = FLOW.nearest_mode(out)
    assert (modes == 1).double().mean().item() == pytest.approx(0.7, abs=0.03)
    for k in (0, 1):
        members = out[modes == k]
        assert torch.allclose(members.mean(0), FLOW.means[k], atol=0.05)
        assert members.std(0).tolist() == pytest.approx([0.3, 0.3], abs=0.04)


def test_the_noise_comes_only_from_the_generator() -> None:
    noise = torch.randn(8, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    sigmas = uniform_sigmas(8)

    def run(seed: int) -> torch.Tensor:
        return sample_euler_ancestral(FLOW.velocity, noise, sigmas, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(5), run(5))
    assert not torch.allclose(run(5), run(6))
    with pytest.raises(ValueError, match="seeded torch.Generator"):
        sample_euler_ancestral(FLOW.velocity, noise, sigmas)
    with pytest.raises(ValueError, match=r"eta must lie in \[0, 1\]"):
        sample_euler_ancestral(FLOW.velocity, noise, sigmas, generator=torch.Generator(), eta=1.5)
    with pytest.raises(ValueError, match="only denoises"):
        sample_euler_ancestral(FLOW.velocity, noise, sigmas.flip(0), generator=torch.Generator())


def test_the_split_lands_between_euler_and_full_ancestral() -> None:
    assert ancestral_split(0.8, 0.5, 0.0) == pytest.approx((0.5, 1.0, 0.0))
    sigma_down, keep, renoise = ancestral_split(0.8, 0.5, 1.0)
    assert sigma_down == pytest.approx(0.5**2 / 0.8)
    # data part (1 - sigma_down) rescaled to 1 - sigma_next, noise part topped up to sigma_next
    assert keep * (1 - sigma_down) == pytest.approx(0.5)
    assert (keep * sigma_down) ** 2 + renoise**2 == pytest.approx(0.5**2)
