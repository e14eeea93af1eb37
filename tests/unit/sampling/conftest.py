"""Sampling tests run many tiny tensor ops; one intra-op thread keeps them fast on a busy machine.

With two threads on a loaded two-core box each small op waits on thread hand-off (measured 40x
slower here), and tensors of a few hundred elements gain nothing from parallelism.
"""

from __future__ import annotations


import pytest
import torch
from torch import Tensor

from tests.fixtures.gmm_flow import GaussianMixtureFlow


@pytest.fixture(autouse=True)
def single_thread_torch(one_torch_thread: None) -> None:
    """Every sampling test runs on one torch thread (tests/conftest.py `one_torch_thread`)."""


@pytest.fixture(scope="session")
def flow() -> GaussianMixtureFlow:
    """The reference two-mode mixture of techniques.md section 9."""
    return GaussianMixtureFlow.two_modes()


@pytest.fixture(scope="session")
def noise() -> Tensor:
    """256 starting noises for the convergence tests."""
    return torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.fixture(scope="session")
def reference(flow: GaussianMixtureFlow, noise: Tensor) -> Tensor:
    """The exact endpoints of `noise`, for practical purposes: RK4 at 400 steps (agrees with 200 to ~3e-9)."""
    with torch.inference_mode():
        return flow.integrate_rk4(noise, steps=400)
