"""Every file in workflows/ converts, validates against the real registry and runs.

They run as a user's fresh checkout would: on the shipped demo model in models/, with the shipped
input/example.png, writing into a temporary output folder.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import uuid
from pathlib import Path

import pytest
import torch
from PIL import Image

from engine.cache import OutputCache
from engine.convert import is_ui_workflow, load_workflow
from engine.executor import Executor, RunRequest
from engine.paths import Folders
from engine.registry import NodeRegistry
from engine.validation import validate_prompt
from modeling.manager import build_model_manager

PROJECT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((PROJECT / "workflows").glob("*.json"))


@pytest.fixture
def shipped_folders(folders: Folders) -> Folders:
    for image in (PROJECT / "input").glob("*.png"):
        shutil.copy(image, folders.input_dir / image.name)
    return dataclasses.replace(folders, models_dir=PROJECT / "models")


@pytest.mark.parametrize("path", WORKFLOWS, ids=[path.name for path in WORKFLOWS])
def test_workflow_validates_and_runs(path: Path, registry: NodeRegistry, shipped_folders: Folders) -> None:
    folders = shipped_folders
    data = json.loads(path.read_text())
    prompt = load_workflow(data, registry.object_info(folders.choices))
    checked = validate_prompt(prompt, registry, folders=folders)
    assert checked.ok and not checked.node_errors, (checked.error, checked.node_errors)
    extra = {"extra_pnginfo": {"workflow": data}} if is_ui_workflow(data) else {}
    result = Executor(registry, OutputCache(), folders, models=build_model_manager(torch.device("cpu"))).run(
        RunRequest(str(uuid.uuid4()), checked.prompt, checked.outputs, extra))
    assert result.status == "success", result.failure
    images = [image for ui in result.outputs.values() for image in ui.get("images", [])]
    assert images, "every example workflow saves at least one image"
    for image in images:
        with Image.open(folders.root_for_type(image["type"]) / image["subfolder"] / image["filename"]) as saved:
            assert saved.size[0] > 0 and "prompt" in saved.text


def test_there_are_example_workflows() -> None:
    assert len(WORKFLOWS) >= 2


def test_the_default_workflow_and_its_api_format_twin_are_the_same_graph(registry: NodeRegistry,
                                                                        shipped_folders: Folders) -> None:
    """default_api.json is what the server runs for default.json: regenerate it when default.json changes."""
    canvas = json.loads((PROJECT / "workflows" / "default.json").read_text())
    twin = json.loads((PROJECT / "workflows" / "default_api.json").read_text())
    assert load_workflow(canvas, registry.object_info(shipped_folders.choices)) == twin
