"""Shared fixtures: folders in a temporary directory and a registry of the built-in nodes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

# Tests never reach a model hub: a missing local config must fail at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from engine.paths import Folders  # noqa: E402
from engine.registry import NodeRegistry  # noqa: E402


@pytest.fixture
def folders(tmp_path: Path) -> Folders:
    built = Folders.under(tmp_path)
    built.create()
    built.models_dir.mkdir(parents=True, exist_ok=True)
    return built


@pytest.fixture
def registry() -> NodeRegistry:
    built = NodeRegistry()
    built.discover("nodes")
    return built


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread for the test: a parallel sum's order, and so its last bits, depend on the count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
