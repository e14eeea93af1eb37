"""Sharing in the browser: the default workflow on a first visit, save / reload / open, API export,
PNGs carrying workflows dropped on the canvas, the templates menu, and workflows naming node types
the server lacks (issue 4, "Sharing"; frontend.md §9.4 steps 7-8)."""

from __future__ import annotations

import base64
import copy
import io
import json
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo
from playwright.sync_api import Page

from tests.api.server_process import ServerProcess
from tests.browser.canvas_bridge import drop_file, graph_nodes, serialized, to_page, widget_values_by_node

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / "workflows"
DEFAULT = json.loads((WORKFLOWS / "default.json").read_text())
IMG2IMG = json.loads((WORKFLOWS / "img2img.json").read_text())
LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy


def node_types(workflow: dict[str, Any]) -> dict[int, str]:
    return {int(node["id"]): node["type"] for node in workflow["nodes"]}


def link_tuples(workflow: dict[str, Any]) -> set[tuple[int, int, int, int, str]]:
    """Links as (from, from_slot, to, to_slot, type) whatever the schema version writes."""
    result = set()
    for link in workflow.get("links") or []:
        if isinstance(link, dict):
            link = [link["id"], link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"],
                    link["type"]]
        result.add((int(link[1]), int(link[2]), int(link[3]), int(link[4]), str(link[5])))
    return result


def positions(workflow: dict[str, Any]) -> dict[int, list[float]]:
    return {int(node["id"]): list(node["pos"]) for node in workflow["nodes"]}


def inputs_of(prompt: dict[str, Any]) -> dict[str, Any]:
    """An API prompt's inputs per node id (titles and other _meta aside)."""
    return {key: node["inputs"] for key, node in prompt.items()}


def with_node(workflow: dict[str, Any], node_id: int, **changes: Any) -> dict[str, Any]:
    changed = copy.deepcopy(workflow)
    next(node for node in changed["nodes"] if node["id"] == node_id).update(changes)
    return changed


def png_with_text(chunks: dict[str, str], color: tuple[int, int, int] = (40, 90, 200)) -> bytes:
    info = PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def widget_values_by_name(page: Page) -> dict[int, dict[str, Any]]:
    return {int(node["id"]): dict(node["widgets"]) for node in graph_nodes(page)}


def assert_widgets_hold(page: Page, server: ServerProcess, workflow: dict[str, Any]) -> None:
    """Every widget holds the value the server reads from `workflow` for that input (by name, so
    files written with or without extras such as LoadImage's upload value compare alike)."""
    prompt = server.post("/api/flowmill/convert", {"workflow": workflow})
    held = widget_values_by_name(page)
    expected = {int(key): {name: value for name, value in node["inputs"].items() if not isinstance(value, list)}
                for key, node in prompt.items()}
    assert {key: {name: held[key].get(name) for name in values} for key, values in expected.items()} == expected
    assert sum(len(values) for values in expected.values()) >= 5  # something was compared


def wait_for_node_type(page: Page, node_type: str) -> None:
    page.wait_for_function("t => window.app.graph.nodes.some((n) => n.type === t)", arg=node_type)


def error_panel_text(page: Page) -> str:
    panel = page.locator("#error-panel")
    panel.wait_for(state="visible")
    return panel.inner_text()


def save_via_toolbar(page: Page, name: str, folder: Path) -> tuple[Path, str]:
    """Click Save, answer the name dialog, and keep the download."""
    page.click("#save-button")
    page.locator("#name-dialog-input").fill(name)
    with page.expect_download() as download_info:
        page.click("#name-dialog-ok")
    download = download_info.value
    target = folder / download.suggested_filename
    download.save_as(target)
    return target, download.suggested_filename


def run_on_server(server: ServerProcess, workflow: dict[str, Any], timeout: float = 180.0) -> bytes:
    """Queue a canvas workflow as the page does; return the PNG its SaveImage wrote."""
    body = {"prompt": workflow, "client_id": "test-sharing", "extra_data": {"extra_pnginfo": {"workflow": workflow}}}
    prompt_id = server.post("/api/prompt", body)["prompt_id"]
    deadline = time.monotonic() + timeout
    while True:  # polls the history: the condition is the server's record, not elapsed time
        entry = server.get(f"/api/history/{prompt_id}").get(prompt_id)
        if entry and entry.get("status", {}).get("completed"):
            break
        assert entry is None or entry.get("status", {}).get("status_str") != "error", entry
        assert time.monotonic() < deadline, f"prompt {prompt_id} did not finish in {timeout} s"
        time.sleep(0.2)
    image = next(image for output in entry["outputs"].values() for image in output.get("images", []))
    query = urllib.parse.urlencode({"filename": image["filename"], "subfolder": image["subfolder"], "type": "output"})
    with LOCAL.open(f"{server.url}/api/view?{query}", timeout=30) as response:
        return response.read()


def test_first_visit_opens_the_default_workflow(page: Page) -> None:
    graph = serialized(page)
    assert node_types(graph) == node_types(DEFAULT)
    assert link_tuples(graph) == link_tuples(DEFAULT)
    assert widget_values_by_node(graph) == widget_values_by_node(DEFAULT)
    assert page.locator("#workflow-name").inner_text() == "default"


def test_save_reload_and_open_give_back_the_same_graph(page: Page, tmp_path: Path) -> None:
    saved_path, file_name = save_via_toolbar(page, "my flow", tmp_path)
    assert file_name == "my flow.json"
    saved = json.loads(saved_path.read_text())
    live = serialized(page)
    assert len(saved["nodes"]) == len(live["nodes"]) == len(DEFAULT["nodes"])
    assert link_tuples(saved) == link_tuples(live) == link_tuples(DEFAULT)
    assert widget_values_by_node(saved) == widget_values_by_node(live)
    assert page.locator("#workflow-name").inner_text() == "my flow"

    # An edit, then a reload: the autosave brings back the edited graph and its name.
    page.evaluate("""() => { const sampler = window.app.graph.getNodeById(5);
        sampler.widgets.find((w) => w.name === "steps").value = 7;
        sampler.pos = [777, 333]; window.app.markChanged(); }""")
    page.wait_for_function("() => (localStorage.getItem('flowmill.autosave') || '').includes('777')")
    before_reload = serialized(page)
    page.reload()
    page.wait_for_function("window.app && window.app.ready === true")
    after_reload = serialized(page)
    assert widget_values_by_node(after_reload) == widget_values_by_node(before_reload)
    assert next(n for n in after_reload["nodes"] if n["id"] == 5)["widgets_values"][2] == 7
    assert positions(after_reload) == positions(before_reload)
    assert link_tuples(after_reload) == link_tuples(before_reload)
    assert page.locator("#workflow-name").inner_text() == "my flow"

    # Change the graph again, then open the saved file: the graph is the saved one (steps 20, 7 nodes).
    page.evaluate("() => { const {graph} = window.app; graph.remove(graph.getNodeById(6)); window.app.markChanged(); }")
    assert len(graph_nodes(page)) == len(DEFAULT["nodes"]) - 1
    page.set_input_files("#workflow-file", str(saved_path))
    page.wait_for_function("n => window.app.graph.nodes.length === n", arg=len(saved["nodes"]))
    reopened = serialized(page)
    assert widget_values_by_node(reopened) == widget_values_by_node(saved)
    assert link_tuples(reopened) == link_tuples(saved)
    assert page.locator("#workflow-name").inner_text() == "my flow"


def test_export_api_matches_the_servers_conversion(page: Page, server: ServerProcess, tmp_path: Path) -> None:
    with page.expect_download() as download_info:
        page.click("#export-api-button")
    download = download_info.value
    assert download.suggested_filename == "default_api.json"
    target = tmp_path / "default_api.json"
    download.save_as(target)
    exported = json.loads(target.read_text())
    expected = server.post("/api/flowmill/convert", {"workflow": DEFAULT})
    assert {key: node["class_type"] for key, node in exported.items()} == {
        "1": "CheckpointLoaderSimple", "2": "CLIPTextEncode", "3": "CLIPTextEncode", "4": "EmptySD3LatentImage",
        "5": "KSampler", "6": "VAEDecode", "7": "SaveImage"}
    assert inputs_of(exported) == inputs_of(expected)


def test_dropping_a_png_with_an_embedded_workflow_loads_it(page: Page, server: ServerProcess) -> None:
    workflow = with_node(IMG2IMG, 2, widgets_values=["a drop test: a yellow square on grey"])
    workflow = with_node(workflow, 5, widgets_values=[1234, "fixed", 9, 3.5, "euler", "simple", 0.6])
    data = png_with_text({"prompt": json.dumps({"1": {"class_type": "EmptyImage", "inputs": {}}}),
                          "workflow": json.dumps(workflow)})
    drop_file(page, "from_comfy.png", data, "image/png")
    wait_for_node_type(page, "LoadImage")
    loaded = serialized(page)
    assert node_types(loaded) == node_types(workflow)
    assert_widgets_hold(page, server, workflow)
    assert widget_values_by_name(page)[2]["text"] == "a drop test: a yellow square on grey"
    assert widget_values_by_name(page)[5]["steps"] == 9
    assert link_tuples(loaded) == link_tuples(workflow)
    assert page.locator("#workflow-name").inner_text() == "from_comfy"


def test_dropping_a_png_written_by_flowmill_loads_its_workflow(page: Page, server: ServerProcess) -> None:
    workflow = with_node(DEFAULT, 2, widgets_values=["sharing test: a green square"])
    workflow = with_node(workflow, 5, widgets_values=[7, "fixed", 2, 4.0, "euler", "simple", 1.0])
    data = run_on_server(server, workflow)
    chunks = page.evaluate("""async (b64) => { const {readPngWorkflow} = await import("/js/pnginfo.js");
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const {workflow, prompt} = await readPngWorkflow(bytes);
        return {nodes: workflow?.nodes?.length, classes: Object.values(prompt || {}).map((n) => n.class_type)}; }""",
                           base64.b64encode(data).decode())
    assert chunks["nodes"] == len(workflow["nodes"])
    assert sorted(chunks["classes"]) == sorted(node["type"] for node in workflow["nodes"])

    drop_file(page, "flowmill_00001_.png", data, "image/png")
    page.wait_for_function("""() => window.app.workflow.serialize().nodes.some((n) =>
        (n.widgets_values || []).includes("sharing test: a green square"))""")
    loaded = serialized(page)
    assert node_types(loaded) == node_types(workflow)
    assert widget_values_by_node(loaded) == widget_values_by_node(workflow)


def test_an_image_dropped_on_load_image_goes_to_the_node_not_the_graph(page: Page) -> None:
    page.evaluate("wf => window.app.workflow.load(wf, {name: 'img2img'})", IMG2IMG)
    centre = page.evaluate("""() => { const {canvas, graph} = window.app; const node = graph.getNodeById(8);
        canvas.ds.offset = [250 - node.pos[0], 150 - node.pos[1]]; canvas.setDirty(true, true);
        return [node.pos[0] + node.size[0] / 2, node.pos[1] + node.size[1] / 2]; }""")
    on_node = to_page(page, tuple(centre))
    # A PNG that carries a workflow, dropped on the node: LoadImage uploads it; the graph stays.
    drop_file(page, "dropped_on_node.png", png_with_text({"workflow": json.dumps(DEFAULT)}), "image/png",
              client_xy=on_node)
    page.wait_for_function("""() => window.app.graph.getNodeById(8).widgets
        .find((w) => w.name === "image").value === "dropped_on_node.png" """)
    assert node_types(serialized(page)) == node_types(IMG2IMG)
    # A workflow JSON dropped on the same node is not the node's business: it opens.
    drop_file(page, "plain.json", json.dumps(DEFAULT).encode(), "application/json", client_xy=on_node)
    page.wait_for_function("() => !window.app.graph.nodes.some((n) => n.type === 'LoadImage')")
    assert node_types(serialized(page)) == node_types(DEFAULT)
    assert page.locator("#workflow-name").inner_text() == "plain"


def test_a_png_without_a_workflow_is_refused_with_a_message(page: Page, tmp_path: Path) -> None:
    plain = tmp_path / "holiday.png"
    plain.write_bytes(png_with_text({"Software": "a camera"}))
    before = serialized(page)
    page.set_input_files("#workflow-file", str(plain))
    text = error_panel_text(page)
    assert "holiday.png" in text and "no workflow" in text
    assert node_types(serialized(page)) == node_types(before)


def test_templates_menu_lists_workflows_and_opens_img2img(page: Page, server: ServerProcess) -> None:
    page.click("#templates-button")
    items = page.locator("#templates-menu [data-template]")
    items.first.wait_for()
    listed = set(items.evaluate_all("(buttons) => buttons.map((b) => b.dataset.template)"))
    assert listed == {path.stem for path in WORKFLOWS.glob("*.json")}
    page.click("#templates-menu [data-template='img2img']")
    wait_for_node_type(page, "LoadImage")
    assert page.locator("#templates-menu").is_hidden()
    loaded = serialized(page)
    assert node_types(loaded) == node_types(IMG2IMG)
    assert_widgets_hold(page, server, IMG2IMG)
    assert widget_values_by_name(page)[8]["image"] == "example.png"
    assert link_tuples(loaded) == link_tuples(IMG2IMG)
    assert page.locator("#workflow-name").inner_text() == "img2img"


def test_an_api_format_template_opens_laid_out_as_a_graph(page: Page) -> None:
    prompt = json.loads((WORKFLOWS / "invert_api.json").read_text())
    page.click("#templates-button")
    page.click("#templates-menu [data-template='invert_api']")
    wait_for_node_type(page, "ImageScaleBy")
    loaded = serialized(page)
    assert node_types(loaded) == {int(key): node["class_type"] for key, node in prompt.items()}
    assert {(source, target) for source, _, target, _, _ in link_tuples(loaded)} == {(1, 2), (2, 3), (3, 4)}
    widgets = {node["id"]: dict(node["widgets"]) for node in graph_nodes(page)}
    assert widgets[1]["color"] == 16744448 and widgets[1]["width"] == 64
    assert widgets[3]["scale_by"] == 2.0 and widgets[3]["upscale_method"] == "nearest-exact"
    assert widgets[4]["filename_prefix"] == "invert"
    xs = [next(n for n in loaded["nodes"] if n["id"] == i)["pos"][0] for i in (1, 2, 3, 4)]
    assert xs == sorted(xs) and len(set(xs)) == 4, xs  # left to right along the chain
    # What was drawn converts back to the same prompt.
    converted = page.evaluate("async () => window.app.api.convertToApi(window.app.workflow.serialize())")
    assert inputs_of(converted) == inputs_of(prompt)


def test_unknown_node_types_open_marked_and_named(page: Page, tmp_path: Path) -> None:
    workflow = copy.deepcopy(DEFAULT)
    workflow["nodes"] += [
        {"id": 8, "type": "FlowmillNoSuchNode", "pos": [900, 500], "size": [200, 80], "flags": {}, "order": 7,
         "mode": 0, "inputs": [], "outputs": [], "properties": {}, "widgets_values": [42, "kept"]},
        {"id": 9, "type": "AnotherMissingNode", "pos": [900, 650], "size": [200, 80], "flags": {}, "order": 8,
         "mode": 0, "inputs": [], "outputs": [], "properties": {}, "widgets_values": []},
    ]
    workflow["last_node_id"] = 9
    path = tmp_path / "needs_packs.json"
    path.write_text(json.dumps(workflow))
    page.set_input_files("#workflow-file", str(path))
    wait_for_node_type(page, "FlowmillNoSuchNode")
    text = error_panel_text(page)
    assert "FlowmillNoSuchNode" in text and "AnotherMissingNode" in text
    assert "CheckpointLoaderSimple" not in text
    marked = page.evaluate("() => window.app.graph.nodes.filter((n) => n.has_errors).map((n) => n.id).sort()")
    assert marked == [8, 9]
    loaded = serialized(page)
    assert node_types(loaded) == node_types(workflow)
    assert widget_values_by_node(loaded)[8] == [42, "kept"]  # kept as they are, so saving loses nothing


def test_new_clears_the_graph_and_undo_brings_it_back(page: Page) -> None:
    page.click("#new-button")
    page.wait_for_function("() => window.app.graph.nodes.length === 0")
    assert page.locator("#workflow-name").inner_text() == "Untitled"
    page.click("#undo-button")
    page.wait_for_function("n => window.app.graph.nodes.length === n", arg=len(DEFAULT["nodes"]))
    assert node_types(serialized(page)) == node_types(DEFAULT)


def test_keyboard_shortcuts_save_and_open(page: Page) -> None:
    # Playwright turns on file-chooser interception when a listener first appears, asynchronously;
    # listening from the start makes sure it is on before Ctrl+O (a chooser before that is lost).
    page.on("filechooser", lambda chooser: None)
    page.locator("#graph-canvas").focus()
    page.keyboard.press("Control+s")
    page.locator("#name-dialog-input").wait_for()
    assert page.locator("#name-dialog-input").input_value() == "default"
    page.keyboard.press("Escape")  # cancelled: no download, the dialog goes away
    page.locator("#name-dialog").wait_for(state="detached")
    page.locator("#graph-canvas").focus()  # closing the dialog may hand focus elsewhere on a slow machine
    with page.expect_file_chooser() as chooser_info:
        page.keyboard.press("Control+o")
    assert chooser_info.value.element.get_attribute("id") == "workflow-file"
    # Typing in a text field keeps the browser's own meaning of the keys.
    page.click("#batch-count")
    page.keyboard.press("Control+s")
    assert page.locator("#name-dialog").count() == 0


def test_pasting_workflow_json_loads_it_but_not_into_a_text_field(page: Page) -> None:
    paste = """([selector, text]) => { const data = new DataTransfer(); data.setData("text/plain", text);
        document.querySelector(selector).dispatchEvent(new ClipboardEvent("paste",
          {clipboardData: data, bubbles: true, cancelable: true})); }"""
    page.evaluate(paste, ["#batch-count", json.dumps(IMG2IMG)])  # typing into a field: left alone
    assert node_types(serialized(page)) == node_types(DEFAULT)
    page.evaluate(paste, ["#graph-canvas", "{not a workflow"])
    assert node_types(serialized(page)) == node_types(DEFAULT)
    page.evaluate(paste, ["#graph-canvas", json.dumps(IMG2IMG)])
    wait_for_node_type(page, "LoadImage")
    assert node_types(serialized(page)) == node_types(IMG2IMG)


def test_a_schema_v1_workflow_opens(page: Page, tmp_path: Path) -> None:
    """ComfyUI's newer files (version 1: link objects, `state`) open as well as v0.4 ones."""
    v1 = page.evaluate("() => JSON.parse(JSON.stringify(window.app.graph.asSerialisable()))")
    assert v1["version"] == 1 and isinstance(v1["links"][0], dict)
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(v1))
    page.click("#new-button")
    page.wait_for_function("() => window.app.graph.nodes.length === 0")
    page.set_input_files("#workflow-file", str(path))
    page.wait_for_function("n => window.app.graph.nodes.length === n", arg=len(DEFAULT["nodes"]))
    loaded = serialized(page)
    assert node_types(loaded) == node_types(DEFAULT)
    assert link_tuples(loaded) == link_tuples(DEFAULT)
    assert widget_values_by_node(loaded) == widget_values_by_node(DEFAULT)
