"""Node types the server lacks are named for what they are (issue 13, §2): a ComfyUI core node that
Flowmill does not have yet is reported as such, a type from a custom node pack as a custom node that
is not installed. The canvas takes the list of core types from the server
(`GET /api/flowmill/core_node_types`), so this test asks the server too rather than hard-coding it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from playwright.sync_api import Browser, Page

from tests.api.server_process import ServerProcess
from tests.browser.conftest import VIEWPORT

REPO = Path(__file__).resolve().parents[2]
DEFAULT = json.loads((REPO / "workflows" / "default.json").read_text())
CUSTOM_TYPE = "AcmePackFancyUpscaler"


def core_type_flowmill_lacks(server: ServerProcess) -> str:
    core = server.get("/api/flowmill/core_node_types")["types"]
    assert core == sorted(core) and "KSampler" in core and CUSTOM_TYPE not in core
    have = server.get("/api/object_info")
    lacking = [name for name in core if name not in have]
    assert lacking, "Flowmill has every ComfyUI core node: nothing to report"
    return "KSamplerAdvanced" if "KSamplerAdvanced" in lacking else lacking[0]


def test_core_and_custom_node_types_are_reported_apart(page: Page, server: ServerProcess, tmp_path: Path) -> None:
    core_type = core_type_flowmill_lacks(server)
    workflow = copy.deepcopy(DEFAULT)
    for node_id, node_type in ((20, core_type), (21, CUSTOM_TYPE)):
        workflow["nodes"].append({"id": node_id, "type": node_type, "pos": [900, 100 * node_id - 1500],
                                  "size": [240, 80], "flags": {}, "order": node_id, "mode": 0, "inputs": [],
                                  "outputs": [], "properties": {}, "widgets_values": [1]})
    workflow["last_node_id"] = 21
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(workflow))
    page.set_input_files("#workflow-file", str(path))
    panel = page.locator("#error-panel")
    panel.wait_for(state="visible")
    text = panel.inner_text()
    assert f"ComfyUI core nodes Flowmill does not have yet: {core_type}" in text, text
    assert f"custom nodes not installed: {CUSTOM_TYPE}" in text, text
    assert f"{core_type} is a ComfyUI core node Flowmill does not have yet" in text, text
    assert f"{CUSTOM_TYPE} is not a ComfyUI core node" in text, text
    marked = page.evaluate("() => window.app.graph.nodes.filter((n) => n.has_errors).map((n) => n.id).sort()")
    assert marked == [20, 21]


def test_without_the_core_list_both_possibilities_are_named(browser: Browser, server: ServerProcess,
                                                              tmp_path: Path) -> None:
    """A server that cannot list ComfyUI's core types (an older Flowmill): the canvas still opens
    the workflow and says the type may be either kind."""
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1, bypass_csp=True)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.route("**/flowmill/core_node_types", lambda route: route.fulfill(status=404, body="404: Not Found"))
        page.goto(server.url + "/")
        page.wait_for_function("window.app && window.app.ready === true", timeout=30_000)
        workflow = copy.deepcopy(DEFAULT)
        workflow["nodes"].append({"id": 20, "type": CUSTOM_TYPE, "pos": [900, 100], "size": [240, 80], "flags": {},
                                  "order": 20, "mode": 0, "inputs": [], "outputs": [], "properties": {}})
        path = tmp_path / "older_server.json"
        path.write_text(json.dumps(workflow))
        page.set_input_files("#workflow-file", str(path))
        panel = page.locator("#error-panel")
        panel.wait_for(state="visible")
        text = panel.inner_text()
        assert f"node types this server does not have: {CUSTOM_TYPE}" in text, text
        assert "a ComfyUI core node Flowmill does not have yet, or a custom node that is not installed" in text, text
        assert errors == []
    finally:
        context.close()
