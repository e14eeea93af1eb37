"""VelocityRefinerLoader: listed in /object_info with models/velocity_refiners' files, loads the shipped refiner,
and names itself and its input when a name is missing or escapes the folder."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch

from engine.paths import Folders
from engine.registry import NodeRegistry
from modeling.velocity_refiner import LoadedRefiner
from tests.fixtures.pipeline import scratch_folders
from tests.nodes.generation.conftest import Nodes

PROJECT = Path(__file__).resolve().parents[3]
SHIPPED = "flowmill-shapes-demo-refiner.safetensors"


@pytest.fixture
def shipped_folders(tmp_path: Path) -> Folders:
    """The repository's own models/ folder, with scratch input/output folders."""
    return scratch_folders(PROJECT / "models", tmp_path)


def test_declared_with_the_folder_listing(registry: NodeRegistry, tmp_path: Path) -> None:
    folders = Folders.under(tmp_path)
    refiners = folders.model_folder("velocity_refiners")
    (refiners / "nested").mkdir(parents=True)
    shutil.copy(PROJECT / "models" / "velocity_refiners" / SHIPPED, refiners / SHIPPED)
    (refiners / "nested" / "other.safetensors").write_bytes(b"")
    (refiners / "notes.report.json").write_text("{}")  # reports beside the weights are not listed

    info = registry.object_info(folders.choices)["VelocityRefinerLoader"]
    assert info["input"]["required"]["refiner_name"][0] == [SHIPPED, "nested/other.safetensors"]
    assert info["input_order"] == {"required": ["refiner_name"]}
    assert info["output"] == ["VELOCITY_REFINER"]
    assert info["display_name"] == "Load Velocity Refiner (FlowTurbo)"
    assert info["category"] == "advanced/loaders"


def test_loads_the_shipped_refiner(registry: NodeRegistry, shipped_folders: Folders) -> None:
    nodes = Nodes(registry, shipped_folders)
    assert SHIPPED in shipped_folders.choices("velocity_refiners")
    refiner = nodes.one("VelocityRefinerLoader", refiner_name=SHIPPED)
    assert isinstance(refiner, LoadedRefiner)
    assert refiner.device == torch.device("cpu") and refiner.latent_channels == 16 and refiner.name == SHIPPED
    x = torch.randn(2, 16, 8, 8)
    offset = refiner(x, torch.tensor([0.3, 0.7]), torch.randn(2, 16, 8, 8))
    assert offset.shape == x.shape and torch.isfinite(offset).all() and offset.abs().mean() > 0
    assert isinstance(nodes.fingerprint("VelocityRefinerLoader", refiner_name=SHIPPED), str)


def test_missing_or_escaping_names_name_the_node_and_input(registry: NodeRegistry, shipped_folders: Folders) -> None:
    nodes = Nodes(registry, shipped_folders)
    with pytest.raises(FileNotFoundError, match=r"VelocityRefinerLoader: refiner_name 'missing\.safetensors' was not "
                                                r"found in models/velocity_refiners"):
        nodes.run("VelocityRefinerLoader", refiner_name="missing.safetensors")
    with pytest.raises(ValueError, match=r"VelocityRefinerLoader: refiner_name '\.\./checkpoints' is not a valid name"):
        nodes.run("VelocityRefinerLoader", refiner_name="../checkpoints")
    assert math.isnan(nodes.fingerprint("VelocityRefinerLoader", refiner_name="missing.safetensors"))
