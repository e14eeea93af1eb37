"""Every file in workflows/ converts, validates against the real registry and runs.

They run as a user's fresh checkout would: on the shipped demo model in models/, with the shipped
input/example.png, writing into a temporary output folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import uuid
from pathlib import Path

import numpy as np
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
# sha256 of each saved image's RGB pixels per workflow, recorded at commit 0845c35 (before the model
# manager, LoRA and the loader changes) on the CI machine's CPU with one torch thread: the shipped
# workflows must keep giving exactly these images. One thread, because the order of a parallel sum
# depends on the thread count; a new workflow has no entry until its outputs are recorded; a CPU with
# another instruction set may round differently, and then the file is re-recorded there from that commit.
REFERENCE_OUTPUTS = json.loads((Path(__file__).with_name("reference_outputs.json")).read_text())


@pytest.fixture
def shipped_folders(folders: Folders) -> Folders:
    for image in (PROJECT / "input").glob("*.png"):
        shutil.copy(image, folders.input_dir / image.name)
    return dataclasses.replace(folders, models_dir=PROJECT / "models")


@pytest.mark.parametrize("path", WORKFLOWS, ids=[path.name for path in WORKFLOWS])
def test_workflow_validates_and_runs(path: Path, registry: NodeRegistry, shipped_folders: Folders,
                                     one_torch_thread: None) -> None:
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
    hashes = []
    for image in images:
        with Image.open(folders.root_for_type(image["type"]) / image["subfolder"] / image["filename"]) as saved:
            assert saved.size[0] > 0 and "prompt" in saved.text
            hashes.append(hashlib.sha256(np.asarray(saved.convert("RGB")).tobytes()).hexdigest())
    if path.name in REFERENCE_OUTPUTS:
        assert sorted(hashes) == REFERENCE_OUTPUTS[path.name], "the shipped workflow's images changed"


def test_there_are_example_workflows() -> None:
    assert len(WORKFLOWS) >= 2


def test_the_default_workflow_and_its_api_format_twin_are_the_same_graph(registry: NodeRegistry,
                                                                        shipped_folders: Folders) -> None:
    """default_api.json is what the server runs for default.json: regenerate it when default.json changes."""
    canvas = json.loads((PROJECT / "workflows" / "default.json").read_text())
    twin = json.loads((PROJECT / "workflows" / "default_api.json").read_text())
    assert load_workflow(canvas, registry.object_info(shipped_folders.choices)) == twin
