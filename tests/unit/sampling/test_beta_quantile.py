"""sampling/beta_quantile.py against Beta distributions whose quantiles have closed forms."""

from __future__ import annotations

import math

import pytest

from sampling.beta_quantile import beta_cdf, beta_ppf

LEVELS = [0.001, 0.05, 0.2, 1 / 3, 0.5, 0.7, 0.95, 0.999]


@pytest.mark.parametrize("q", LEVELS)
def test_uniform_quantile_is_the_identity(q: float) -> None:
    assert beta_ppf(q, 1.0, 1.0) == pytest.approx(q, abs=1e-12)


@pytest.mark.parametrize("q", LEVELS)
def test_beta_2_1_quantile_is_the_square_root(q: float) -> None:
    # CDF x^2 on [0, 1]
    assert beta_ppf(q, 2.0, 1.0) == pytest.approx(math.sqrt(q), abs=1e-12)


@pytest.mark.parametrize("q", LEVELS)
def test_arcsine_quantile(q: float) -> None:
    # Beta(1/2, 1/2) has CDF (2 / pi) asin(sqrt(x)); its infinite density at both ends is the hard case
    assert beta_ppf(q, 0.5, 0.5) == pytest.approx(math.sin(math.pi * q / 2) ** 2, abs=1e-12)


@pytest.mark.parametrize("q", LEVELS)
def test_scheduler_shape_is_symmetric_and_inverts_the_cdf(q: float) -> None:
    x = beta_ppf(q, 0.6, 0.6)
    assert beta_cdf(x, 0.6, 0.6) == pytest.approx(q, abs=1e-12)
    assert beta_ppf(1 - q, 0.6, 0.6) == pytest.approx(1 - x, abs=1e-12)


def test_endpoints_and_bad_arguments() -> None:
    assert beta_ppf(0.0, 0.6, 0.6) == 0.0
    assert beta_ppf(1.0, 0.6, 0.6) == 1.0
    assert beta_cdf(-0.5, 2.0, 3.0) == 0.0 and beta_cdf(1.5, 2.0, 3.0) == 1.0
    with pytest.raises(ValueError, match="shape"):
        beta_ppf(0.5, 0.0, 1.0)
    with pytest.raises(ValueError, match="quantile"):
        beta_ppf(1.5, 1.0, 1.0)
