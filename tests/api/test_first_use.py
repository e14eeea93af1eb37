"""First use (issue 13 §3): the Templates menu names every template with a title and a one-line
description from workflows/index/templates.json, the templates keep their seeds fixed, and a
missing model's validation error says which models/ subfolder the file belongs in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.workflow_routes import TEMPLATE_INDEX, list_templates
from tests.api.conftest import MINIMAL_CANVAS

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / "workflows"
CHANGING_CONTROLS = {"increment", "decrement", "randomize"}
# An output node (the stub pack's) that takes any type, so a lone loader is validated.
SHOWN = {"2": {"class_type": "StubOutput", "inputs": {"value": ["1", 0]}}}


async def test_every_template_has_a_distinct_title_and_a_description(client: TestClient) -> None:
    response = await client.get("/api/flowmill/templates")
    assert response.status == 200
    entries = await response.json()
    assert {entry["name"] for entry in entries} == {path.stem for path in WORKFLOWS.glob("*.json")}
    for entry in entries:
        assert entry["title"].strip(), entry
        assert entry.get("description", "").strip(), f"{entry['file']} has no description"
        assert "\n" not in entry["description"], f"{entry['file']}: the description must be one line"
        # A title derived from the file name ("Rf edit api") means the index does not name it.
        assert entry["title"].lower().replace(" ", "_") != entry["name"], entry
    titles = [entry["title"].casefold() for entry in entries]
    assert len(set(titles)) == len(titles), sorted(titles)


def test_the_index_names_only_templates_that_exist() -> None:
    index = json.loads((WORKFLOWS / TEMPLATE_INDEX).read_text())
    names = [item["name"] for item in index["templates"]]
    assert len(set(names)) == len(names)
    assert set(names) == {path.stem for path in WORKFLOWS.glob("*.json")}
    assert [entry["name"] for entry in list_templates(WORKFLOWS)] == names  # the menu keeps the index's order


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.json")), ids=lambda path: path.name)
def test_canvas_templates_keep_their_seeds(path: Path) -> None:
    """A re-queued template must hit the cache: no control_after_generate may change a seed.
    (API-format files carry no control values; the canvas opens them as `fixed`, see the browser test.)"""
    workflow = json.loads(path.read_text())
    if "nodes" not in workflow:
        return
    for node in workflow["nodes"]:
        values = node.get("widgets_values") or []
        changing = [value for value in values if isinstance(value, str) and value in CHANGING_CONTROLS]
        assert not changing, f"{path.name}: node {node['id']} ({node['type']}) has control {changing}"


def _folder(tmp_path: Path, files: dict[str, Any], index: Any = None) -> Path:
    folder = tmp_path / "workflows"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_text(json.dumps(data))
    if index is not None:
        (folder / TEMPLATE_INDEX).parent.mkdir()
        (folder / TEMPLATE_INDEX).write_text(index if isinstance(index, str) else json.dumps(index))
    return folder


def test_index_titles_and_order_then_the_files_it_does_not_name(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"a.json": MINIMAL_CANVAS, "b.json": MINIMAL_CANVAS, "c.json": MINIMAL_CANVAS},
                     {"templates": [{"name": "c", "title": "Third file", "description": "Listed first"},
                                    {"name": "gone", "title": "No such file", "description": "Ignored"},
                                    {"name": "a", "title": "  ", "description": "Blank title: the file's own"},
                                    {"title": "No name"}]})
    entries = list_templates(folder)
    assert [(entry["name"], entry["title"], entry.get("description")) for entry in entries] == [
        ("c", "Third file", "Listed first"),
        ("a", "A", "Blank title: the file's own"),
        ("b", "B", None),
    ]


@pytest.mark.parametrize("index", ["{not json", json.dumps({"templates": "nope"}), json.dumps([1, 2])])
def test_a_broken_index_still_lists_every_file(tmp_path: Path, index: str) -> None:
    folder = _folder(tmp_path, {"b.json": MINIMAL_CANVAS, "a.json": MINIMAL_CANVAS}, index)
    assert [(entry["name"], entry["title"]) for entry in list_templates(folder)] == [("a", "A"), ("b", "B")]


@pytest.mark.parametrize(("node_type", "inputs", "folder"), [
    ("CheckpointLoaderSimple", {"ckpt_name": "missing.safetensors"}, "checkpoints"),
    ("VAELoader", {"vae_name": "missing.safetensors"}, "vae"),
    ("UNETLoader", {"unet_name": "missing.safetensors", "weight_dtype": "default"}, "diffusion_models"),
    ("CLIPLoader", {"clip_name": "missing.safetensors", "type": "stable_diffusion"}, "text_encoders"),
    ("VelocityRefinerLoader", {"refiner_name": "missing.safetensors"}, "velocity_refiners"),
])
async def test_a_missing_model_names_the_folder_it_belongs_in(client: TestClient, node_type: str,
                                                              inputs: dict[str, Any], folder: str) -> None:
    prompt = {"1": {"class_type": node_type, "inputs": inputs}, **SHOWN}
    response = await client.post("/prompt", json={"prompt": prompt})
    body = await response.json()
    assert response.status == 400, body
    error = body["node_errors"]["1"]["errors"][0]
    text = f"{error['message']}: {error['details']}"
    assert f"put the model file (.safetensors, or a diffusers folder) in models/{folder}/" in text, text
    assert "'missing.safetensors'" in text and "it is empty" in text, text
    assert error["extra_info"]["input_name"] == next(iter(inputs))
    assert str(REPO) not in text and "/tmp" not in text  # no absolute server paths


async def test_a_listed_model_passes_validation_and_others_are_named(client: TestClient, tmp_path: Path) -> None:
    """The models/ listing decides, as the combo check did: a present file validates; the message for
    a missing one lists what the folder has."""
    vae_folder = tmp_path / "models" / "vae"
    vae_folder.mkdir(parents=True, exist_ok=True)
    (vae_folder / "present.safetensors").write_bytes(b"")
    prompt = {"1": {"class_type": "VAELoader", "inputs": {"vae_name": "absent.safetensors"}}, **SHOWN}
    body = await (await client.post("/prompt", json={"prompt": prompt})).json()
    details = body["node_errors"]["1"]["errors"][0]["details"]
    assert "models/vae/" in details and "it has 'present.safetensors'" in details, details
    prompt["1"]["inputs"]["vae_name"] = "present.safetensors"
    response = await client.post("/prompt", json={"prompt": prompt})
    assert response.status == 200, await response.text()
