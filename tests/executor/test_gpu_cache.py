"""The device tier of the cache budget and OOM recovery; needs CUDA (skipped elsewhere)."""

from __future__ import annotations

import pytest
import torch

from engine.cache import CachePolicy, MemoryBudget, OutputCache

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
MIB = 1024**2


def test_entries_over_the_device_budget_move_to_host_then_drop() -> None:
    cuda = torch.device("cuda")
    cache = OutputCache(CachePolicy("classic"), MemoryBudget(cuda, device_bytes=8 * MIB, host_bytes=8 * MIB))
    cache.begin_run()
    for index in range(4):  # 4 MiB each
        cache.put(bytes([index]), [[torch.zeros(MIB, device=cuda)]], None)
    assert cache.device_total <= 8 * MIB
    assert cache.host_total <= 8 * MIB
    assert len(cache) == 4
    oldest = cache.get(bytes([0]))
    assert oldest is not None and oldest.outputs[0][0].device.type == "cuda"  # promoted back on a hit
    cache.put(bytes([9]), [[torch.zeros(MIB, device=cuda)]], None)
    assert cache.device_total <= 8 * MIB and cache.host_total <= 8 * MIB
    assert len(cache) < 5, "past both budgets the least recently used entries are dropped"


def test_offload_moves_everything_to_host() -> None:
    cuda = torch.device("cuda")
    cache = OutputCache(budget=MemoryBudget(cuda, device_bytes=64 * MIB, host_bytes=64 * MIB))
    cache.begin_run()
    cache.put(b"a", [[torch.ones(MIB, device=cuda)]], None)
    cache.offload_device_entries()
    assert cache.device_total == 0 and cache.get(b"a") is not None


def test_outputs_produced_on_the_cpu_stay_on_the_cpu() -> None:
    cuda = torch.device("cuda")
    cache = OutputCache(budget=MemoryBudget(cuda, device_bytes=64 * MIB, host_bytes=64 * MIB))
    cache.begin_run()
    cache.put(b"cpu", [[torch.ones(4)]], None)
    assert cache.get(b"cpu").outputs[0][0].device.type == "cpu"
