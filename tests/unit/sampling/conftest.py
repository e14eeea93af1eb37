"""Sampling tests run many tiny tensor ops; one intra-op thread keeps them fast on a busy machine.

With two threads on a loaded two-core box each small op waits on thread hand-off (measured 40x
slower here), and tensors of a few hundred elements gain nothing from parallelism.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread_torch() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
