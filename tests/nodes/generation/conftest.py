"""Tiny random-weight models in a models/ folder, and ways to call the generation nodes.

The models are written once per session (building them dominates the cost); every test gets
its own input/output/temp folders around that shared models folder. Tests that change model
files copy them first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.context import InterruptFlag, NodeContext
from engine.paths import Folders
from engine.registry import NodeRegistry
from modeling.manager import build_model_manager
from tests.fixtures.pipeline import Pipeline, scratch_folders
from tests.fixtures.tiny_models import build_all, write_loose_files, write_model_folder, write_single_file

FOLDER_CHECKPOINT = "tiny-demo"
SINGLE_CHECKPOINT = "tiny-single.safetensors"
UNET = "tiny-flux.safetensors"
VAE = "tiny-vae.safetensors"
TEXT_ENCODER = "tiny-clip.safetensors"


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    modules = build_all()
    write_model_folder(root / "checkpoints" / FOLDER_CHECKPOINT, modules)
    write_single_file(root / "checkpoints" / SINGLE_CHECKPOINT, modules)
    write_loose_files(root, modules)
    return root


@pytest.fixture
def folders(tmp_path: Path, tiny_models_dir: Path) -> Folders:
    return scratch_folders(tiny_models_dir, tmp_path)


@dataclass
class Reports:
    """What a node reported through its context: (value, total, preview) per call."""

    calls: list[tuple[float, float, Any]] = field(default_factory=list)

    def __call__(self, value: float, total: float, preview: Any) -> None:
        self.calls.append((value, total, preview))


class Nodes:
    """Calls node functions through their specs, as the executor does, with a recording context."""

    def __init__(self, registry: NodeRegistry, folders: Folders, device: str = "cpu") -> None:
        self.registry = registry
        self.reports = Reports()
        self.interrupt = InterruptFlag()
        self.models = build_model_manager(torch.device(device))
        self.ctx = NodeContext(node_id="1", display_node_id="1", prompt_id="p", folders=folders,
                               device=torch.device(device), interrupt=self.interrupt, report=self.reports,
                               models=self.models)

    def run(self, node_id: str, **inputs: Any) -> tuple[Any, ...]:
        spec = self.registry.get(node_id)
        assert spec is not None, f"{node_id} is not registered"
        hooks = spec.make_hooks()
        return hooks.run(self.ctx, **inputs) if hooks.wants_context else hooks.run(**inputs)

    def one(self, node_id: str, **inputs: Any) -> Any:
        result = self.run(node_id, **inputs)
        assert isinstance(result, tuple) and len(result) == 1, result
        return result[0]

    def fingerprint(self, node_id: str, **inputs: Any) -> Any:
        spec = self.registry.get(node_id)
        assert spec is not None
        hooks = spec.make_hooks()
        return hooks.fingerprint(self.ctx, **inputs) if hooks.wants_context else hooks.fingerprint(**inputs)


@pytest.fixture
def nodes(registry: NodeRegistry, folders: Folders) -> Nodes:
    return Nodes(registry, folders)


@pytest.fixture
def pipeline(registry: NodeRegistry, folders: Folders) -> Pipeline:
    return Pipeline(registry, folders)


@dataclass
class Loaded:
    model: Any
    positive: list
    negative: list


@pytest.fixture
def loaded(nodes: Nodes) -> Loaded:
    model, clip, _ = nodes.run("CheckpointLoaderSimple", ckpt_name=FOLDER_CHECKPOINT)
    positive = nodes.one("CLIPTextEncode", text="a red circle on a blue background", clip=clip)
    negative = nodes.one("CLIPTextEncode", text="", clip=clip)
    return Loaded(model, positive, negative)


def empty(nodes: Nodes, batch: int = 1, node: str = "EmptySD3LatentImage") -> dict:
    return nodes.one(node, width=64, height=48, batch_size=batch)
