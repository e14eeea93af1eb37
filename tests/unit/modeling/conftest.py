"""Tiny random-weight models written once per session in every layout the loaders read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures import tiny_models


@dataclass(frozen=True)
class TinyLayouts:
    modules: tiny_models.TinyModules
    models_dir: Path
    folder: Path
    single_file: Path
    loose: tiny_models.LooseFiles


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyLayouts:
    models_dir = tmp_path_factory.mktemp("models")
    modules = tiny_models.build_all()
    return TinyLayouts(
        modules=modules,
        models_dir=models_dir,
        folder=tiny_models.write_model_folder(models_dir / "checkpoints" / "tiny-flux", modules),
        single_file=tiny_models.write_single_file(models_dir / "checkpoints" / "tiny-single.safetensors", modules),
        loose=tiny_models.write_loose_files(models_dir, modules),
    )
