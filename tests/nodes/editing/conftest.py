"""The editor nodes on the shipped demo model, with a rendered shapes-world source image."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.paths import Folders
from engine.registry import NodeRegistry
from tests.nodes.generation.conftest import Nodes
from training.shapes.render import render
from training.shapes.scene import Scene

PROJECT = Path(__file__).resolve().parents[3]
SOURCE_SCENE = Scene("circle", "red", "blue", "large", "center")


@pytest.fixture
def demo_nodes(registry: NodeRegistry, folders: Folders) -> Nodes:
    return Nodes(registry, dataclasses.replace(folders, models_dir=PROJECT / "models"))


@dataclasses.dataclass
class Demo:
    """The demo model's outputs the editors need, and the source latent."""

    model: object
    clip: object
    vae: object
    latent: dict

    def encode(self, nodes: Nodes, text: str) -> list:
        return nodes.one("CLIPTextEncode", text=text, clip=self.clip)


@pytest.fixture
def demo(demo_nodes: Nodes) -> Demo:
    model, clip, vae = demo_nodes.run("CheckpointLoaderSimple", ckpt_name="flowmill-shapes-demo")
    pixels = torch.from_numpy(render(SOURCE_SCENE).astype(np.float32) / 255)[None]
    latent = demo_nodes.one("VAEEncode", pixels=pixels, vae=vae)
    return Demo(model, clip, vae, latent)
