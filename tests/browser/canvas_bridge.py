"""The coordinate bridge between graph space and page pixels (frontend.md §9.2).

A canvas has no DOM to select, so tests ask the page (through `window.app`) where a socket or a widget
is drawn, then move the real mouse there. Keep this module small and stable: every browser test uses it.
"""

from __future__ import annotations

import base64
from typing import Any

from playwright.sync_api import Page

# Graph position -> page position: (p + offset) * scale, plus the canvas element's place on the page.
_TO_PAGE = """([x, y]) => { const {canvas} = window.app;
  const q = canvas.ds.convertOffsetToCanvas([x, y]);
  const r = canvas.canvas.getBoundingClientRect(); return [r.left + q[0], r.top + q[1]]; }"""


def to_page(page: Page, graph_xy: tuple[float, float]) -> tuple[float, float]:
    x, y = page.evaluate(_TO_PAGE, list(graph_xy))
    return float(x), float(y)


def slot_xy(page: Page, node_id: int, is_input: bool, slot: int) -> tuple[float, float]:
    """Page coordinates of a node's input or output socket."""
    graph_xy = page.evaluate("([id, isInput, slot]) => Array.from(window.app.graph.getNodeById(id)"
                             ".getConnectionPos(isInput, slot))", [node_id, is_input, slot])
    return to_page(page, tuple(graph_xy))


def widget_xy(page: Page, node_id: int, widget_name: str) -> tuple[float, float]:
    """Page coordinates of the middle of a widget's row."""
    graph_xy = page.evaluate("""([id, name]) => { const node = window.app.graph.getNodeById(id);
        const widget = node.widgets.find((w) => w.name === name);
        if (!widget) throw new Error(`node ${id} has no widget ${name}`);
        const height = widget.computedHeight || window.app.LiteGraph.NODE_WIDGET_HEIGHT;
        return [node.pos[0] + node.size[0] / 2, node.pos[1] + widget.y + height / 2]; }""", [node_id, widget_name])
    return to_page(page, tuple(graph_xy))


def empty_canvas_xy(page: Page) -> tuple[float, float]:
    """A point on the canvas with no node under it (searches a coarse grid of the visible area)."""
    return tuple(page.evaluate("""() => { const {canvas, graph} = window.app;
        const r = canvas.canvas.getBoundingClientRect();
        for (let gy = 0.15; gy < 0.95; gy += 0.1) for (let gx = 0.1; gx < 0.95; gx += 0.1) {
          const [px, py] = [r.width * gx, r.height * gy];
          const g = canvas.ds.convertCanvasToOffset([px, py]);
          if (!graph.getNodeOnPos(g[0], g[1]) && !graph.getGroupOnPos?.(g[0], g[1])) return [r.left + px, r.top + py];
        }
        throw new Error("no empty spot on the canvas"); }"""))


def drag(page: Page, start: tuple[float, float], end: tuple[float, float], steps: int = 12) -> None:
    """Press, travel (more than litegraph's 6 px click drift) and release."""
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(*end, steps=steps)
    page.mouse.up()


def connect(page: Page, from_node: int, from_slot: int, to_node: int, to_slot: int) -> None:
    """Drag from an output socket to an input socket, as a user does."""
    drag(page, slot_xy(page, from_node, False, from_slot), slot_xy(page, to_node, True, to_slot))


def add_node_via_search(page: Page, query: str, node_type: str) -> int:
    """Double-click empty canvas, type into the search box, pick `node_type`; returns the new node's id.
    Robust to a slow double-click (see `open_search_box`)."""
    before = set(node_ids(page))
    open_search_box(page)
    box = page.locator(".litesearchbox input.value")
    box.fill(query)
    page.locator(".litesearchbox .lite-search-item", has_text=query).first.wait_for()
    box.press("Enter")
    page.wait_for_function("n => window.app.graph.nodes.length > n", arg=len(before))
    added = [node for node in graph_nodes(page) if node["id"] not in before]
    assert [node["type"] for node in added] == [node_type], added
    return int(added[0]["id"])


def graph_nodes(page: Page) -> list[dict[str, Any]]:
    return page.evaluate("() => window.app.graph.nodes.map((n) => ({id: n.id, type: n.type, title: n.title,"
                         " mode: n.mode, widgets: (n.widgets || []).map((w) => [w.name, w.value])}))")


def node_ids(page: Page) -> list[int]:
    return [int(node["id"]) for node in graph_nodes(page)]


def node_of_type(page: Page, node_type: str) -> int:
    ids = [node["id"] for node in graph_nodes(page) if node["type"] == node_type]
    assert len(ids) == 1, f"expected one {node_type}, found {ids}"
    return int(ids[0])


def serialized(page: Page) -> dict[str, Any]:
    """The canvas workflow as the app saves it (LiteGraph v0.4 JSON)."""
    return page.evaluate("() => window.app.workflow.serialize()")


def widget_values_by_node(workflow: dict[str, Any]) -> dict[int, Any]:
    """{node id: widgets_values} of a canvas workflow: what a saved file keeps of each node's widgets.
    A node without widgets may be written with `[]` or without the key; both read as `[]`."""
    return {int(node["id"]): node.get("widgets_values") or [] for node in workflow["nodes"]}


def drop_file(page: Page, file_name: str, data: bytes, mime: str, selector: str = "#graph-canvas",
              client_xy: tuple[float, float] | None = None) -> None:
    """Drop one file on an element, as a user dragging it from the desktop does (frontend.md §9.4 step 8)."""
    transfer = page.evaluate_handle("""([name, b64, mime]) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, {type: mime}));
        return transfer; }""", [file_name, base64.b64encode(data).decode("ascii"), mime])
    init: dict[str, Any] = {"dataTransfer": transfer}
    if client_xy is not None:
        init.update(clientX=client_xy[0], clientY=client_xy[1])
    page.dispatch_event(selector, "drop", init)


# -- running (test_running.py and any test that queues) ---------------------------------------

RUN_END_TYPES = ("execution_success", "execution_error", "execution_interrupted")


def execution_log(page: Page, kind: str | None = None) -> list[dict[str, Any]]:
    """What reached the canvas during runs (`app.execution.log`), optionally of one entry type."""
    return page.evaluate("k => window.app.execution.log.filter((e) => !k || e.type === k)", kind)


def wait_for_runs_ended(page: Page, count: int, timeout: float = 60_000) -> None:
    """Wait until `count` prompts have ended (success, error or interrupted) since the page opened."""
    page.wait_for_function("([n, types]) => window.app.execution.log.filter((e) => types.includes(e.type)).length >= n",
                           arg=[count, list(RUN_END_TYPES)], timeout=timeout)


def set_widget(page: Page, node_id: int, widget_name: str, value: Any) -> None:
    """Set a widget's value as the canvas would after an edit (no mouse: the value is the point)."""
    page.evaluate("""([id, name, value]) => { const node = window.app.graph.getNodeById(id);
        const widget = node?.widgets?.find((w) => w.name === name);
        if (!widget) throw new Error(`node ${id} has no widget ${name}`);
        widget.value = value; widget.callback?.(value, window.app.canvas, node);
        window.app.canvas.setDirty(true, true); }""", [node_id, widget_name, value])


def load_workflow(page: Page, workflow: dict[str, Any], name: str = "test") -> None:
    """Replace the graph with a UI-format workflow through the app's own loader."""
    page.evaluate("([wf, name]) => window.app.workflow.load(wf, {name})", [workflow, name])
    page.wait_for_function("n => window.app.graph.nodes.length === n", arg=len(workflow["nodes"]))


# -- editing (test_editing.py) -----------------------------------------------------------------


def show_node(page: Page, node_id: int, at: tuple[float, float] = (160, 120), scale: float = 1.0) -> None:
    """Pan (and zoom) so a node's top-left corner sits at canvas pixel `at`, then wait for a redraw."""
    page.evaluate("""([id, x, y, scale]) => { const {canvas, graph} = window.app; const node = graph.getNodeById(id);
        canvas.ds.scale = scale; canvas.ds.offset = [x / scale - node.pos[0], y / scale - node.pos[1]];
        canvas.setDirty(true, true); }""", [node_id, at[0], at[1], scale])
    wait_for_redraw(page)


def wait_for_redraw(page: Page) -> None:
    """Wait until the canvas has drawn at least one more frame."""
    page.evaluate("() => new Promise((done) => { const start = window.app.canvas.frame;"
                  " const poll = () => window.app.canvas.frame > start + 1 ? done() : requestAnimationFrame(poll);"
                  " window.app.canvas.setDirty(true, true); requestAnimationFrame(poll); })")


def title_xy(page: Page, node_id: int) -> tuple[float, float]:
    """Page coordinates of a point on a node's title bar (clear of the collapse dot)."""
    graph_xy = page.evaluate("""id => { const node = window.app.graph.getNodeById(id);
        const h = window.app.LiteGraph.NODE_TITLE_HEIGHT;
        return [node.pos[0] + Math.min(80, node.size[0] / 2), node.pos[1] - h / 2]; }""", node_id)
    return to_page(page, tuple(graph_xy))


def node_body_xy(page: Page, node_id: int) -> tuple[float, float]:
    """Page coordinates of a point inside a node, right of its sockets and above its first widget."""
    graph_xy = page.evaluate("""id => { const node = window.app.graph.getNodeById(id);
        return [node.pos[0] + node.size[0] / 2, node.pos[1] + 8]; }""", node_id)
    return to_page(page, tuple(graph_xy))


def select_node(page: Page, node_id: int) -> None:
    """Click a node's title, as a user selects it (this also focuses the canvas for shortcuts)."""
    page.mouse.click(*title_xy(page, node_id))
    page.wait_for_function("id => !!window.app.canvas.selected_nodes[id]", arg=node_id)


def input_slot(page: Page, node_id: int, name: str) -> int:
    """Index of a node's input slot by name (-1 if it has none)."""
    script = "([id, name]) => window.app.graph.getNodeById(id).inputs.findIndex((s) => s.name === name)"
    return int(page.evaluate(script, [node_id, name]))


def link_count(page: Page) -> int:
    return int(page.evaluate("() => window.app.graph.links.size"))


def context_menu_pick(page: Page, at: tuple[float, float], *labels: str) -> None:
    """Right-click at a page point, then click through menu entries (each in the newest menu)."""
    page.mouse.click(*at, button="right")
    for label in labels:
        menu = page.locator(".litecontextmenu").last
        menu.locator(".litemenu-entry").filter(has_text=label).first.click()


def widget_value(page: Page, node_id: int, widget_name: str) -> Any:
    return page.evaluate("([id, name]) => window.app.graph.getNodeById(id).widgets.find((w) => w.name === name).value",
                         [node_id, widget_name])


def undo_steps(page: Page) -> int:
    """How many undo steps the history holds."""
    return int(page.evaluate("() => window.app.undo.depth().past"))


def wait_for_undo_steps(page: Page, count: int) -> None:
    """Wait until the history holds `count` undo steps (checkpoints run just after a gesture)."""
    page.wait_for_function("n => window.app.undo.depth().past >= n", arg=count)


def open_search_box(page: Page, at: tuple[float, float] | None = None, attempts: int = 3) -> None:
    """Double-click empty canvas until litegraph's search box is open. On a loaded machine the two
    clicks can arrive further apart than a double-click allows; then they count as two clicks on empty
    canvas, which change nothing, and the double-click is simply repeated."""
    box = page.locator(".litesearchbox input.value")
    for attempt in range(attempts):
        page.mouse.dblclick(*(at or empty_canvas_xy(page)))
        try:
            box.wait_for(timeout=3000)
            return
        except Exception:
            if attempt == attempts - 1:
                raise
