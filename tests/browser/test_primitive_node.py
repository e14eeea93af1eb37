"""ComfyUI's legacy frontend PrimitiveNode on the canvas (issue 13, §2): a file with PrimitiveNodes
feeding converted widget inputs opens with them drawn as real nodes (not missing placeholders), their
values are edited through the canvas's own widget prompt, and the prompt that runs uses the edited
values. A primitive added from the search box takes its type and widget from the input it is wired to.
"""

from __future__ import annotations

import random
import time
from typing import Any

from playwright.sync_api import Page

from tests.api.server_process import ServerProcess
from tests.browser.canvas_bridge import (
    add_node_via_search,
    connect,
    graph_nodes,
    load_workflow,
    serialized,
    show_node,
    wait_for_redraw,
    widget_value,
    widget_xy,
)

WIDTH_PRIMITIVE, PREFIX_PRIMITIVE, EMPTY, SAVE = 10, 11, 1, 2


def primitive_workflow(width: int, prefix: str) -> dict[str, Any]:
    """EmptyImage -> SaveImage; EmptyImage.width and SaveImage.filename_prefix are converted widget
    inputs, each fed by a PrimitiveNode, as ComfyUI's legacy frontend saves them."""
    def node(node_id: int, node_type: str, pos: list[int], **fields: Any) -> dict[str, Any]:
        return {"id": node_id, "type": node_type, "pos": pos, "size": [320, 160], "flags": {}, "order": 0,
                "mode": 0, "inputs": [], "outputs": [], "properties": {}, **fields}

    def primitive_output(socket_type: str, link: int, widget: str) -> dict[str, Any]:
        return {"name": socket_type, "type": socket_type, "links": [link], "slot_index": 0, "widget": {"name": widget}}

    legacy = {"Run widget replace on values": False}
    return {
        "last_node_id": 11, "last_link_id": 3,
        "nodes": [
            node(EMPTY, "EmptyImage", [420, 80],
                 inputs=[{"name": "width", "type": "INT", "link": 2, "widget": {"name": "width"}}],
                 outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [1], "slot_index": 0}],
                 widgets_values=[512, 24, 1, 0]),
            node(SAVE, "SaveImage", [800, 80],
                 inputs=[{"name": "images", "type": "IMAGE", "link": 1},
                         {"name": "filename_prefix", "type": "STRING", "link": 3,
                          "widget": {"name": "filename_prefix"}}],
                 widgets_values=["stale"]),
            node(WIDTH_PRIMITIVE, "PrimitiveNode", [40, 80], title="Width", properties=legacy,
                 outputs=[primitive_output("INT", 2, "width")], widgets_values=[width, "fixed"]),
            node(PREFIX_PRIMITIVE, "PrimitiveNode", [40, 260], title="Prefix", properties=legacy,
                 outputs=[primitive_output("STRING", 3, "filename_prefix")], widgets_values=[prefix]),
        ],
        "links": [[1, EMPTY, 0, SAVE, 0, "IMAGE"], [2, WIDTH_PRIMITIVE, 0, EMPTY, 0, "INT"],
                  [3, PREFIX_PRIMITIVE, 0, SAVE, 1, "STRING"]],
        "groups": [], "config": {}, "extra": {}, "version": 0.4,
    }


def widgets_of(page: Page, node_id: int) -> list[list[Any]]:
    return next(node["widgets"] for node in graph_nodes(page) if node["id"] == node_id)


def edit_through_prompt(page: Page, node_id: int, text: str) -> None:
    """Click the middle of the value widget (litegraph opens its value prompt), type, press Enter."""
    show_node(page, node_id, at=(160, 160))
    page.mouse.click(*widget_xy(page, node_id, "value"))
    field = page.locator(".graphdialog input").last
    field.wait_for()
    field.fill(text)
    field.press("Enter")


def history_entry(server: ServerProcess, prompt_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:  # polls the server's record of the run, not a fixed delay
        entry = server.get(f"/api/history/{prompt_id}").get(prompt_id)
        if entry and entry.get("status", {}).get("completed"):
            return entry
        assert entry is None or entry.get("status", {}).get("status_str") != "error", entry
        assert time.monotonic() < deadline, f"prompt {prompt_id} did not finish in {timeout} s"
        time.sleep(0.2)


def test_a_primitive_node_opens_drawn_and_its_edited_value_runs(page: Page, server: ServerProcess) -> None:
    load_workflow(page, primitive_workflow(40, "primitive-before"), name="primitives")
    # Real nodes, not missing-type placeholders: no error mark, nothing reported, widgets built.
    state = page.evaluate("""ids => ids.map((id) => { const n = window.app.graph.getNodeById(id);
        return [n.type, !!n.constructor.missing, !!n.has_errors, n.outputs[0].type]; })""",
                          [WIDTH_PRIMITIVE, PREFIX_PRIMITIVE])
    assert state == [["PrimitiveNode", False, False, "INT"], ["PrimitiveNode", False, False, "STRING"]]
    assert page.locator("#error-panel").is_hidden()
    assert widgets_of(page, WIDTH_PRIMITIVE) == [["value", 40], ["control_after_generate", "fixed"]]
    assert widgets_of(page, PREFIX_PRIMITIVE) == [["value", "primitive-before"]]
    show_node(page, WIDTH_PRIMITIVE)
    assert page.evaluate("id => window.app.canvas.visible_nodes.some((n) => n.id === id)", WIDTH_PRIMITIVE)
    # The targets show the primitives' values (ComfyUI copies them over the target widgets).
    assert widget_value(page, EMPTY, "width") == 40
    assert widget_value(page, SAVE, "filename_prefix") == "primitive-before"

    width = random.randrange(20, 60)
    prefix = f"primitive-edited-{random.randrange(10**6)}"
    edit_through_prompt(page, WIDTH_PRIMITIVE, str(width))
    page.wait_for_function("([id, v]) => window.app.graph.getNodeById(id).widgets[0].value === v",
                           arg=[WIDTH_PRIMITIVE, width])
    edit_through_prompt(page, PREFIX_PRIMITIVE, prefix)
    page.wait_for_function("([id, v]) => window.app.graph.getNodeById(id).widgets[0].value === v",
                           arg=[PREFIX_PRIMITIVE, prefix])
    assert widget_value(page, EMPTY, "width") == width

    saved = {node["id"]: node for node in serialized(page)["nodes"]}
    assert saved[WIDTH_PRIMITIVE]["widgets_values"] == [width, "fixed"]
    assert saved[PREFIX_PRIMITIVE]["widgets_values"] == [prefix]

    prompt_id = page.evaluate("async () => (await window.app.execution.queue(1))[0].promptId")
    entry = history_entry(server, prompt_id)
    ran = entry["prompt"][2]
    assert ran[str(EMPTY)]["inputs"]["width"] == width
    assert ran[str(SAVE)]["inputs"]["filename_prefix"] == prefix
    assert str(WIDTH_PRIMITIVE) not in ran and str(PREFIX_PRIMITIVE) not in ran  # the server never sees them
    images = entry["outputs"][str(SAVE)]["images"]
    assert images and images[0]["filename"].startswith(prefix)


def test_a_primitive_from_the_search_box_takes_the_type_of_the_input_it_feeds(page: Page) -> None:
    load_workflow(page, primitive_workflow(40, "p"), name="primitives")
    height_slot = page.evaluate("""id => { const node = window.app.graph.getNodeById(id);
        return window.app.nodes.convertWidgetToInput(node, 'height'); }""", EMPTY)
    assert height_slot >= 0
    show_node(page, EMPTY, at=(520, 200))
    added = add_node_via_search(page, "Primitive", "PrimitiveNode")
    page.evaluate("([id, x, y]) => { window.app.graph.getNodeById(id).pos = [x, y]; }",
                  [added, *page.evaluate(f"() => {{ const n = window.app.graph.getNodeById({EMPTY}); "
                                         "return [n.pos[0] - 360, n.pos[1] + 40]; }")])
    wait_for_redraw(page)
    unconnected = page.evaluate("id => { const o = window.app.graph.getNodeById(id).outputs[0];"
                                " return [o.name, o.type]; }", added)
    assert unconnected == ["connect to widget input", "*"]
    # It cannot feed a plain socket (SaveImage's images), only a widget input.
    connect(page, added, 0, SAVE, 0)
    assert page.evaluate(f"() => window.app.graph.getNodeById({SAVE}).inputs[0].link") == 1
    connect(page, added, 0, EMPTY, height_slot)
    page.wait_for_function("([id, slot]) => window.app.graph.getNodeById(id).inputs[slot].link != null",
                           arg=[EMPTY, height_slot])
    assert page.evaluate("id => window.app.graph.getNodeById(id).outputs[0].type", added) == "INT"
    assert widgets_of(page, added) == [["value", 24], ["control_after_generate", "fixed"]]  # the target's value
    # Disconnecting its last link turns it back into an unconnected primitive.
    page.evaluate("([id, slot]) => window.app.graph.getNodeById(id).disconnectInput(slot)", [EMPTY, height_slot])
    page.wait_for_function("id => window.app.graph.getNodeById(id).outputs[0].type === '*'", arg=added)
    assert widgets_of(page, added) == []
