"""Builds the long-lived objects (folders, registry, cache, executor) from settings.

This is the composition root shared by `python main.py` (serve), `main.py run` (headless)
and the tests: nothing here is global, every object is built once and passed down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from engine.budget import default_max_tensor_bytes
from engine.cache import GIB, CachePolicy, MemoryBudget, OutputCache
from engine.context import ModelScopes
from engine.executor import Executor
from engine.paths import Folders
from engine.registry import NodeRegistry

PROJECT_DIR = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """What the command line decides; defaults suit a fresh checkout."""

    base_dir: Path = field(default_factory=lambda: Path.cwd())
    models_dir: Path | None = None
    input_dir: Path | None = None
    output_dir: Path | None = None
    temp_dir: Path | None = None
    user_dir: Path | None = None
    cache: CachePolicy = field(default_factory=CachePolicy)
    force_cpu: bool = False
    custom_nodes_dir: Path | None = None
    safe_mode: bool = False
    cache_device_gib: float = 4.0
    cache_host_gib: float = 8.0
    # The most a node's outputs may take (--max-tensor-bytes); None derives it from the
    # machine's memory (engine/budget.py). Graphs over it are refused at validation.
    max_tensor_bytes: int | None = None
    # Bytes of model weights kept resident on the host and on the GPU (--ram-budget,
    # --vram-budget); None derives them from the machine (modeling/manager.py `Budgets`).
    ram_budget: int | None = None
    vram_budget: int | None = None
    # The workflow the browser opens with: text to image on the shipped demo model.
    default_workflow: Path = PROJECT_DIR / "workflows" / "default.json"
    # The canvas's Templates menu lists the workflow files in this folder.
    workflows_dir: Path = PROJECT_DIR / "workflows"

    def folders(self) -> Folders:
        defaults = Folders.under(self.base_dir)
        return Folders(
            models_dir=self.models_dir or defaults.models_dir,
            input_dir=self.input_dir or defaults.input_dir,
            output_dir=self.output_dir or defaults.output_dir,
            temp_dir=self.temp_dir or defaults.temp_dir,
            user_dir=self.user_dir or defaults.user_dir,
        )

    def device(self) -> torch.device:
        if not self.force_cpu and torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")


@dataclass
class Runtime:
    settings: Settings
    folders: Folders
    device: torch.device
    registry: NodeRegistry
    executor: Executor

    @property
    def max_tensor_bytes(self) -> int:
        """The tensor budget validation holds every node to: the flag's, else half the memory."""
        return self.settings.max_tensor_bytes or default_max_tensor_bytes(self.device)


def fill_registry(registry: NodeRegistry, settings: Settings) -> None:
    """Register Flowmill's own nodes, then ComfyUI V1 packs from custom_nodes/ unless in safe mode.

    The slow part of start-up (it imports diffusers and every node module): the server runs it
    on a background thread while it already answers (server/startup.py).
    """
    registry.discover("nodes")
    if settings.custom_nodes_dir is not None and settings.custom_nodes_dir.is_dir():
        from engine.comfy_packs import load_custom_nodes

        load_custom_nodes(registry, settings.custom_nodes_dir, enabled=not settings.safe_mode)


def build_registry(settings: Settings) -> NodeRegistry:
    registry = NodeRegistry()
    fill_registry(registry, settings)
    return registry


def build_runtime(settings: Settings, models: ModelScopes | None = None, *, discover_nodes: bool = True) -> Runtime:
    """The runtime around `models` (the model manager main.py builds; None: no models, for tests of
    the engine alone); with `discover_nodes=False` its registry starts empty, for `fill_registry` later."""
    folders = settings.folders()
    folders.create()
    device = settings.device()
    budget = MemoryBudget(device, int(settings.cache_device_gib * GIB), int(settings.cache_host_gib * GIB))
    registry = build_registry(settings) if discover_nodes else NodeRegistry()
    executor = Executor(registry, OutputCache(settings.cache, budget), folders, device, models)
    return Runtime(settings, folders, device, registry, executor)
