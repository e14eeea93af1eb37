"""Releasing the pages of a mapped weights file: only file pages go, and the tensors still read the same."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from modeling.page_release import WeightFileMappings


def _rss_file() -> int:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("RssFile:"))
    return int(line.split()[1]) * 1024


def test_the_pages_of_a_converted_tensor_leave_the_resident_set_and_its_values_stay(tmp_path: Path) -> None:
    path = tmp_path / "weights.safetensors"
    expected = torch.randn(2048, 2048, generator=torch.Generator().manual_seed(0)).bfloat16()  # 8 MiB
    save_file({"weight": expected}, str(path))
    mapped = load_file(str(path))["weight"]
    converted = mapped.float()  # reads every page: they are resident now
    before = _rss_file()
    WeightFileMappings.of_this_process().release(mapped)
    assert before - _rss_file() > 6 * 2**20
    assert torch.equal(mapped, expected) and torch.equal(converted, expected.float())  # read back from the file


def test_memory_that_is_not_a_weights_file_is_left_alone() -> None:
    anonymous = torch.arange(4 * 2**20, dtype=torch.float32)
    WeightFileMappings.of_this_process().release(anonymous)
    assert torch.equal(anonymous, torch.arange(4 * 2**20, dtype=torch.float32))
