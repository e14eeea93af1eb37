"""Shared fixtures: folders in a temporary directory and a registry of the built-in nodes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
