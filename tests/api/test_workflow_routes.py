"""The sharing routes: the templates menu (workflows/), one template by name, and export conversion.

The template routes read a folder named by `Settings.workflows_dir`; every name that is not a plain
file in that folder (traversal payloads, separators, symlinks leading out) must answer 404 and never
the bytes of a file outside it. Conversion must produce what `/prompt` runs and refuse, naming the
node, what it cannot convert.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

import server.workflow_routes
from engine.convert import load_workflow
from engine.paths import Folders
from engine.registry import NodeRegistry
from server.app import create_app
from server.security import SecurityConfig
from server.workflow_routes import list_templates, template_path
from tests.api.conftest import MINIMAL_CANVAS, build_runtime
from tests.unit.test_path_traversal import CORPUS

REPO = Path(__file__).resolve().parents[2]
DEFAULT = json.loads((REPO / "workflows" / "default.json").read_text())
SECRET = "FLOWMILL-SECRET-TEMPLATE"
PAYLOADS = [str(param.values[0]) for param in CORPUS]
API_PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}


@pytest.fixture
def workflows(tmp_path: Path) -> Path:
    """A templates folder: canvas and API files, junk, and ways out of the folder."""
    folder = tmp_path / "site" / "workflows"
    folder.mkdir(parents=True)
    outside = tmp_path / "site" / "secret.json"
    outside.write_text(json.dumps({**MINIMAL_CANVAS, "extra": {"title": SECRET}}))
    (folder / "minimal.json").write_text(json.dumps(MINIMAL_CANVAS))
    described = {**MINIMAL_CANVAS, "extra": {"title": "Tiny canvas", "description": "Two nodes"}}
    (folder / "described_one.json").write_text(json.dumps(described))
    (folder / "invert_api.json").write_text(json.dumps(API_PROMPT))
    (folder / "settings.json").write_text(json.dumps({"theme": "dark"}))  # JSON, but not a workflow
    (folder / "broken.json").write_text("{not json")
    (folder / "notes.txt").write_text(json.dumps(MINIMAL_CANVAS))  # not *.json
    (folder / "sub").mkdir()
    (folder / "sub" / "nested.json").write_text(json.dumps(MINIMAL_CANVAS))
    (folder / "escape.json").symlink_to(outside)
    (folder / "linked_dir").symlink_to(tmp_path / "site", target_is_directory=True)
    return folder


@pytest.fixture
async def templates_client(aiohttp_client: Any, folders: Folders, tmp_path: Path, workflows: Path) -> TestClient:
    runtime = build_runtime(folders)
    runtime.settings = dataclasses.replace(runtime.settings, workflows_dir=workflows)
    return await aiohttp_client(create_app(runtime, SecurityConfig(), db_path=tmp_path / "queue.sqlite3"))


async def test_templates_list_canvas_and_api_workflows_only(templates_client: TestClient) -> None:
    response = await templates_client.get("/api/flowmill/templates")
    assert response.status == 200
    entries = await response.json()
    assert entries == [
        {"name": "described_one", "file": "described_one.json", "format": "canvas", "title": "Tiny canvas",
         "description": "Two nodes"},
        {"name": "invert_api", "file": "invert_api.json", "format": "api", "title": "Invert api"},
        {"name": "minimal", "file": "minimal.json", "format": "canvas", "title": "Minimal"},
    ]
    assert SECRET not in json.dumps(entries)  # the symlink leading out is not listed


async def test_the_repository_templates_are_listed_by_default(client: TestClient) -> None:
    entries = await (await client.get("/flowmill/templates")).json()
    by_name = {entry["name"]: entry for entry in entries}
    assert {"default", "img2img"} <= set(by_name)
    assert by_name["img2img"]["format"] == "canvas"
    assert by_name["invert_api"]["format"] == "api"
    assert all(entry["name"] + ".json" == entry["file"] for entry in entries)
    on_disk = {path.stem for path in (REPO / "workflows").glob("*.json")}
    assert set(by_name) == on_disk


@pytest.mark.parametrize("name", ["minimal", "minimal.json"])
async def test_a_template_is_served_by_name(templates_client: TestClient, name: str) -> None:
    response = await templates_client.get(f"/api/flowmill/templates/{name}")
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == MINIMAL_CANVAS


async def test_img2img_template_is_the_file_on_disk(client: TestClient) -> None:
    response = await client.get("/api/flowmill/templates/img2img")
    assert response.status == 200
    assert await response.json() == json.loads((REPO / "workflows" / "img2img.json").read_text())


@pytest.mark.parametrize("name", ["missing", "notes.txt", "broken", "sub", "escape", "escape.json", ".hidden"])
async def test_names_that_are_not_servable_templates_are_404(templates_client: TestClient, name: str) -> None:
    response = await templates_client.get(f"/api/flowmill/templates/{name}")
    assert response.status == 404
    assert SECRET not in await response.text()


async def test_traversal_payloads_never_leave_the_folder(templates_client: TestClient) -> None:
    payloads = [*PAYLOADS, "../secret", "../secret.json", "sub/nested", "sub%2Fnested", "linked_dir/secret",
                "..%2fsecret", "%2e%2e%2fsecret", "..\\secret", "/etc/passwd", "SENTINEL_ABSOLUTE"]
    failures = []
    for payload in payloads:
        # Encoded by hand so the client neither normalises ".." away nor re-splits on "/".
        # Lone surrogates (in the corpus) have no UTF-8 form: sent as the raw bytes a client could send.
        raw = payload.encode("utf-8", "surrogatepass")
        url = URL(f"/api/flowmill/templates/{quote(raw, safe='')}", encoded=True)
        response = await templates_client.get(url)
        body = await response.text()
        if response.status != 404 or SECRET in body or "EmptyImage" in body:
            failures.append((payload, response.status))
    assert not failures, failures


def test_template_path_accepts_only_plain_names_in_the_folder(workflows: Path) -> None:
    assert template_path(workflows, "minimal") == (workflows / "minimal.json").resolve()
    for name in ["../secret", "sub/nested", "sub\\nested", "escape", "linked_dir/secret", "", ".", "..", "/x"]:
        assert template_path(workflows, name) is None, name
    for payload in PAYLOADS:
        path = template_path(workflows, payload)
        assert path is None or path.parent == workflows.resolve(), payload


def test_listing_a_missing_folder_is_empty(tmp_path: Path) -> None:
    assert list_templates(tmp_path / "absent") == []


async def test_convert_returns_the_prompt_the_server_would_run(client: TestClient, registry: Any,
                                                               folders: Folders) -> None:
    response = await client.post("/api/flowmill/convert", json={"workflow": DEFAULT})
    assert response.status == 200, await response.text()
    prompt = await response.json()
    assert prompt == load_workflow(DEFAULT, registry.object_info(folders.choices))
    assert {node_id: node["class_type"] for node_id, node in prompt.items()} == {
        "1": "CheckpointLoaderSimple", "2": "CLIPTextEncode", "3": "CLIPTextEncode", "4": "EmptySD3LatentImage",
        "5": "KSampler", "6": "VAEDecode", "7": "SaveImage"}
    sampler = prompt["5"]["inputs"]
    assert sampler["model"] == ["1", 0] and sampler["latent_image"] == ["4", 0]
    twin = json.loads((REPO / "workflows" / "default_api.json").read_text())  # written independently of the route
    assert (sampler["seed"], sampler["steps"], sampler["cfg"], sampler["sampler_name"]) == tuple(
        twin["5"]["inputs"][name] for name in ("seed", "steps", "cfg", "sampler_name"))
    assert prompt["2"]["inputs"]["text"] == twin["2"]["inputs"]["text"] == "a red circle on a blue background"
    assert prompt["2"]["_meta"]["title"] == "Positive prompt"


async def test_convert_passes_an_api_prompt_through(client: TestClient) -> None:
    response = await client.post("/flowmill/convert", json={"workflow": API_PROMPT})
    assert response.status == 200
    assert (await response.json())["1"]["inputs"]["width"] == 8


async def test_convert_refuses_a_broken_node_and_names_it(client: TestClient) -> None:
    broken = copy.deepcopy(DEFAULT)
    sampler = next(node for node in broken["nodes"] if node["type"] == "KSampler")
    sampler["widgets_values"] = "not a list"
    response = await client.post("/api/flowmill/convert", json={"workflow": broken})
    assert response.status == 400
    message = (await response.json())["error"]["message"]
    assert "node 5" in message and "KSampler" in message and "widgets_values" in message


async def test_convert_refuses_unknown_node_types_and_names_them(client: TestClient) -> None:
    workflow = copy.deepcopy(MINIMAL_CANVAS)
    workflow["nodes"][0]["type"] = "NoSuchNodeAnywhere"
    response = await client.post("/api/flowmill/convert", json={"workflow": workflow})
    assert response.status == 400
    message = (await response.json())["error"]["message"]
    assert "node 1" in message and "NoSuchNodeAnywhere" in message


@pytest.mark.parametrize("body", [{}, {"workflow": "text"}, {"workflow": [1, 2]}, [], {"workflow": {"a": 1}}])
async def test_convert_refuses_what_is_not_a_workflow(client: TestClient, body: Any) -> None:
    response = await client.post("/api/flowmill/convert", json=body)
    assert response.status == 400
    assert (await response.json())["error"]["message"]


async def test_nothing_blocking_runs_on_the_event_loop(templates_client: TestClient,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """File reads, path checks and object_info (folder listings) run in the thread pool."""
    loop_thread = threading.get_ident()
    on_loop: list[str] = []

    def watch(name: str, function: Any) -> Any:
        def watched(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == loop_thread:
                on_loop.append(name)
            return function(*args, **kwargs)
        return watched

    for name in ("resolve_under", "list_templates", "load_workflow"):
        monkeypatch.setattr(server.workflow_routes, name, watch(name, getattr(server.workflow_routes, name)))
    monkeypatch.setattr(NodeRegistry, "object_info", watch("object_info", NodeRegistry.object_info))
    assert (await templates_client.get("/flowmill/templates")).status == 200
    assert (await templates_client.get("/flowmill/templates/minimal")).status == 200
    assert (await templates_client.get("/flowmill/templates/..%2fsecret")).status == 404
    assert (await templates_client.post("/flowmill/convert", json={"workflow": MINIMAL_CANVAS})).status == 200
    assert on_loop == []
