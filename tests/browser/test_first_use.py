"""The first ten minutes (issue 13 §3), at the 1440x900 window a new user has: every way of opening
a workflow fits it into the part of the canvas the queue panel leaves visible; an API-format
workflow's LoadImage previews the file its widget names; templates have titles and descriptions and
fixed seeds (a re-queue runs nothing); the search box says when nothing matches, stays on screen
and ranks display names first; inline errors stay clear of other nodes and of the error panel; an
empty canvas has a hint; litegraph's debug overlay is off; history entries show the prompt.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.api.server_process import ServerProcess
from tests.browser.canvas_bridge import (
    add_node_via_search,
    drop_file,
    execution_log,
    node_of_type,
    open_search_box,
    set_widget,
    wait_for_redraw,
    wait_for_runs_ended,
)
from tests.browser.conftest import REPO, PageErrors

WIDE = {"width": 1440, "height": 900}
WORKFLOWS = REPO / "workflows"
TEMPLATES = sorted(path.stem for path in WORKFLOWS.glob("*.json"))
INDEX = {item["name"]: item for item in json.loads((WORKFLOWS / "index" / "templates.json").read_text())["templates"]}
RUN_TIMEOUT_MS = 120_000
# litegraph stops drawing text (slot names, widget values) below this zoom.
LOW_QUALITY_ZOOM = 0.6
# Graph units above a node's title where litegraph draws its badges ("cached").
BADGE_ROOM = 22

# Every node's box on screen (title and badges included) and the area a user can see: the canvas
# element inside the window, less the queue panel when it covers part of it.
_LAYOUT = """() => { const {canvas, graph, LiteGraph} = window.app;
  const c = canvas.canvas.getBoundingClientRect();
  let right = Math.min(c.right, window.innerWidth); const bottom = Math.min(c.bottom, window.innerHeight);
  const panel = document.getElementById('queue-panel');
  const p = panel.getBoundingClientRect();
  if (panel.offsetParent !== null && p.width > 0 && p.left < right && p.right > c.left) right = Math.min(right, p.left);
  const view = {left: Math.max(c.left, 0), top: Math.max(c.top, 0), right, bottom};
  const nodes = graph.nodes.map((n) => { const b = [0, 0, 0, 0]; n.measure(b, canvas.ctx);
    const a = canvas.ds.convertOffsetToCanvas([b[0], b[1] - %d]);
    const z = canvas.ds.convertOffsetToCanvas([b[0] + b[2], b[1] + b[3]]);
    return {id: n.id, type: n.type, left: c.left + a[0], top: c.top + a[1],
            right: c.left + z[0], bottom: c.top + z[1]}; });
  return {view, nodes, scale: canvas.ds.scale, panelLeft: p.left}; }""" % BADGE_ROOM


@pytest.fixture
def wide(browser: Browser, server: ServerProcess) -> Iterator[tuple[Page, PageErrors]]:
    """The app at 1440x900 in a fresh context (empty localStorage), with its console errors."""
    context = browser.new_context(viewport=WIDE, device_scale_factor=1, accept_downloads=True, bypass_csp=True)
    page = context.new_page()
    errors = PageErrors(page)
    page.goto(server.url + "/")
    page.wait_for_function("window.app && window.app.ready === true", timeout=30_000)
    yield page, errors
    unexpected = errors.take()
    context.close()
    assert not unexpected, unexpected


def assert_fitted(page: Page, what: str) -> None:
    """Every node (with its badge room) lies in the visible canvas area, at a zoom that draws text."""
    wait_for_redraw(page)
    layout = page.evaluate(_LAYOUT)
    view = layout["view"]
    assert layout["nodes"], f"{what}: the graph is empty"
    outside = [node for node in layout["nodes"] if node["left"] < view["left"] or node["top"] < view["top"]
               or node["right"] > view["right"] or node["bottom"] > view["bottom"]]
    assert not outside, f"{what}: nodes outside the visible area {view}: {outside}"
    assert layout["scale"] >= LOW_QUALITY_ZOOM, f"{what}: fitted at zoom {layout['scale']:.2f}, too small to read"


def open_template(page: Page, name: str) -> None:
    """Choose a template from the Templates menu, as a user does, and wait until it has replaced the graph.
    The title alone cannot tell: the page may already show a workflow of the same name, and a test that
    edits the graph before the template lands would lose its edit to it."""
    page.evaluate("""() => { window.__templateLoaded = false;
        window.app.addEventListener("graph-loaded", () => { window.__templateLoaded = true; }, {once: true}); }""")
    page.click("#templates-button")
    page.locator(f"#templates-menu [data-template='{name}']").click()
    page.wait_for_function("() => window.__templateLoaded === true")
    page.wait_for_function("n => document.title.startsWith(n + ' ')", arg=name)


def control_values(page: Page) -> list[list[str]]:
    return page.evaluate("""() => window.app.graph.nodes.flatMap((n) => (n.widgets || [])
        .filter((w) => w.controls).map((w) => [n.type + '.' + w.controls.name, w.value]))""")


def queue_and_wait(page: Page, runs_before: int) -> None:
    page.click("#queue-button")
    wait_for_runs_ended(page, runs_before + 1, timeout=RUN_TIMEOUT_MS)


# -- opening fits the view --------------------------------------------------------------------


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_template_opens_fitted_clear_of_the_panel_with_fixed_seeds(wide: tuple[Page, PageErrors],
                                                                         name: str) -> None:
    page, _ = wide
    open_template(page, name)
    assert_fitted(page, name)
    # Its seeds stay as written: a re-queue reuses the cached work (API files carry no control state).
    assert all(value == "fixed" for _, value in control_values(page)), control_values(page)


def test_file_open_drop_history_restore_and_a_hidden_panel_all_fit(wide: tuple[Page, PageErrors]) -> None:
    page, _ = wide
    page.set_input_files("#workflow-file", str(WORKFLOWS / "blend_canvas.json"))
    page.wait_for_function("() => window.app.graph.nodes.some((n) => n.type === 'ImageBlend')")
    assert_fitted(page, "file open (canvas file whose saved view hides Save Image)")

    drop_file(page, "boss_api.json", (WORKFLOWS / "boss_api.json").read_bytes(), "application/json")
    page.wait_for_function("() => window.app.graph.nodes.some((n) => n.type === 'BOSSScheduler')")
    assert_fitted(page, "dropped API-format file")

    # A history entry: run the invert template, open another workflow, click the entry.
    open_template(page, "invert_api")
    queue_and_wait(page, 0)
    open_template(page, "boss_api")
    entry = page.locator("#history-list .history-item").first
    entry.wait_for()
    entry.click()
    page.wait_for_function("() => window.app.graph.nodes.some((n) => n.type === 'ImageInvert')")
    assert_fitted(page, "history entry")

    # The autosave, after a reload: the view is fitted again, wherever it was left.
    open_template(page, "rf_inversion_api")
    page.evaluate("() => { const {canvas} = window.app; canvas.ds.offset = [-5000, -3000]; canvas.ds.scale = 2;"
                  " window.app.workflow.autosaveNow(); }")
    page.reload()
    page.wait_for_function("window.app && window.app.ready === true", timeout=30_000)
    assert page.evaluate("() => window.app.graph.nodes.some((n) => n.type === 'RFInversionEdit')")
    assert_fitted(page, "autosave restore")

    # With the panel hidden the whole width is used.
    page.click("#panel-button")
    expect(page.locator("#queue-panel")).to_be_hidden()
    page.evaluate("() => window.app.fitCanvas()")
    open_template(page, "boss_api")
    assert_fitted(page, "panel hidden")
    layout = page.evaluate(_LAYOUT)
    assert max(node["right"] for node in layout["nodes"]) > layout["panelLeft"]  # uses the room the panel left


# -- API-format workflows ---------------------------------------------------------------------


def test_api_workflow_load_image_previews_the_file_its_widget_names(wide: tuple[Page, PageErrors]) -> None:
    page, _ = wide
    for name in ("rf_edit_api", "sdedit_api"):
        open_template(page, name)
        loader = node_of_type(page, "LoadImage")
        page.wait_for_function("id => window.app.graph.getNodeById(id).imagePreview.loaded", arg=loader)
        preview = page.evaluate("""id => { const n = window.app.graph.getNodeById(id); const p = n.imagePreview;
            const t = p.thumbnail; const c = t.getContext('2d').getImageData(t.width / 2, t.height / 2, 1, 1).data;
            const e = t.getContext('2d').getImageData(1, 1, 1, 1).data;
            return {value: n.widgets.find((w) => w.name === 'image').value, url: p.url,
                    centre: Array.from(c).slice(0, 3), corner: Array.from(e).slice(0, 3)}; }""", loader)
        assert preview["value"] == "red_circle_on_blue.png"
        assert "filename=red_circle_on_blue.png" in preview["url"], preview
        red, green, blue = preview["centre"]  # the picture itself: a red circle on blue
        assert red > 150 and green < 100 and blue < 100, preview
        red, green, blue = preview["corner"]
        assert blue > 150 and red < 100, preview


# -- templates menu and caching ---------------------------------------------------------------


def test_templates_menu_shows_titles_and_descriptions(wide: tuple[Page, PageErrors]) -> None:
    page, _ = wide
    page.click("#templates-button")
    items = page.locator("#templates-menu .template-item")
    expect(items).to_have_count(len(TEMPLATES))
    shown = [(item.get_attribute("data-template"), item.locator(".template-title").inner_text(),
              item.locator(".template-description").inner_text()) for item in items.all()]
    assert [name for name, _, _ in shown] == list(INDEX)  # the index's order
    for name, title, description in shown:
        assert (title, description) == (INDEX[name]["title"], INDEX[name]["description"])
    assert len({title.casefold() for _, title, _ in shown}) == len(shown)


def test_requeuing_a_template_runs_nothing_the_second_time(wide: tuple[Page, PageErrors]) -> None:
    page, _ = wide
    open_template(page, "default_api")
    assert control_values(page) == [["KSampler.seed", "fixed"]]
    # A prompt no earlier test ran, so the first run really computes.
    encoder = page.evaluate("""() => window.app.graph.nodes.find((n) => n.type === 'CLIPTextEncode'
        && n.widgets[0].value.startsWith('a red circle')).id""")
    set_widget(page, encoder, "text", f"a red circle on a blue background {random.randrange(10**9)}")
    queue_and_wait(page, 0)
    first = [entry["node"] for entry in execution_log(page, "executing") if entry["node"]]
    assert str(node_of_type(page, "KSampler")) in first, first
    seed_before = page.evaluate("() => window.app.graph.nodes.find((n) => n.type === 'KSampler').widgets[0].value")

    queue_and_wait(page, 1)
    log = execution_log(page)
    second_id = [entry for entry in log if entry["type"] == "execution_success"][-1]["promptId"]
    executed = [entry["node"] for entry in log if entry["type"] == "executing" and entry["node"]
                and entry["promptId"] == second_id]
    cached = [entry for entry in log if entry["type"] == "cached" and entry["promptId"] == second_id]
    assert executed == [], f"the re-queue ran {executed}"
    node_ids = {str(node_id) for node_id in page.evaluate("() => window.app.graph.nodes.map((n) => n.id)")}
    assert cached and set(cached[-1]["nodes"]) == node_ids, cached
    assert page.evaluate("() => window.app.graph.nodes.find((n) => n.type === 'KSampler').widgets[0].value") \
        == seed_before
    # Every node wears its "cached" badge, and none is cut off by the toolbar above the canvas.
    canvas_top = page.evaluate("() => window.app.canvas.canvas.getBoundingClientRect().top")
    badge_tops = page.evaluate("""() => { const {canvas, LiteGraph} = window.app;
      return window.app.graph.nodes.map((n) => {
        const shown = n.badges.map((b) => (typeof b === 'function' ? b() : b)).filter((b) => b.text);
        const y = n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT - 2 - Math.max(0, ...shown.map((b) => b.height));
        return [shown.map((b) => b.text), canvas.ds.convertOffsetToCanvas([n.pos[0], y])[1]]; }); }""")
    assert all(texts == ["cached"] for texts, _ in badge_tops), badge_tops
    assert all(top >= 0 for _, top in badge_tops), (canvas_top, badge_tops)

    # The history entry shows the start of the prompt and a run time on one line.
    entry = page.locator("#history-list .history-item").first
    expect(entry.locator(".history-prompt")).to_contain_text("a red circle on a blue background")
    duration = entry.locator(".history-duration")
    expect(duration).to_be_visible()
    assert duration.inner_text().endswith(" s"), duration.inner_text()
    assert duration.evaluate("e => e.getClientRects().length") == 1  # one box: not wrapped
    line = duration.evaluate("e => parseFloat(getComputedStyle(e).lineHeight) || 16")
    assert duration.bounding_box()["height"] < 1.6 * line


# -- search box -------------------------------------------------------------------------------


def test_search_ranks_exact_and_prefix_matches_of_display_names_first(wide: tuple[Page, PageErrors]) -> None:
    page, _ = wide
    open_search_box(page)
    box = page.locator(".litesearchbox input.value")
    items = page.locator(".litesearchbox .lite-search-item")
    box.fill("vae")
    expect(items.first).to_be_visible()
    titles = [text.split("\n")[0].strip() for text in items.all_inner_texts()]
    expected = [["VAE", "Decode"], ["VAE", "Encode"], ["Load", "VAE"]]
    assert [title.split()[0:2] for title in titles[:3]] == expected, titles
    box.fill("ksampler")
    expect(items.first).to_contain_text("KSampler")
    assert items.first.get_attribute("data-type") == "KSampler"
    box.fill("load image")
    expect(items.first).to_contain_text("Load Image")


def test_search_says_when_nothing_matches(wide: tuple[Page, PageErrors]) -> None:
    page, _ = wide
    nodes = page.evaluate("() => window.app.graph.nodes.length")
    open_search_box(page)
    box = page.locator(".litesearchbox input.value")
    box.fill("wobbulator")
    note = page.locator(".litesearchbox .app-search-empty")
    expect(note).to_be_visible()
    expect(note).to_contain_text('No node matches "wobbulator"')
    expect(page.locator(".litesearchbox .lite-search-item")).to_have_count(0)
    box.fill("vae")
    expect(note).to_have_count(0)
    box.fill("zzzz nothing")
    expect(note).to_be_visible()
    box.press("Enter")  # nothing to add: the box closes and the graph is unchanged
    expect(page.locator(".litesearchbox")).to_have_count(0)
    assert page.evaluate("() => window.app.graph.nodes.length") == nodes


@pytest.mark.parametrize("corner", ["bottom-right", "bottom-left", "top-right"])
def test_search_box_stays_on_screen_near_an_edge(wide: tuple[Page, PageErrors], corner: str) -> None:
    page, _ = wide
    page.click("#new-button")  # an empty canvas: every point is free
    box = page.evaluate("() => { const r = window.app.canvas.canvas.getBoundingClientRect();"
                        " return [r.left, r.top, r.right, r.bottom]; }")
    x = box[2] - 6 if "right" in corner else box[0] + 6
    y = box[3] - 6 if "bottom" in corner else box[1] + 6
    open_search_box(page, at=(x, y))
    page.locator(".litesearchbox input.value").fill("e")  # a long list: the box at its full height
    expect(page.locator(".litesearchbox .lite-search-item").nth(10)).to_be_attached()
    wait_for_redraw(page)
    rect = page.locator(".litesearchbox").bounding_box()
    assert rect["x"] >= 0 and rect["y"] >= 0, rect
    assert rect["x"] + rect["width"] <= WIDE["width"] and rect["y"] + rect["height"] <= WIDE["height"], rect
    first = page.locator(".litesearchbox .lite-search-item").first.bounding_box()
    assert first["y"] + first["height"] <= WIDE["height"], first  # the results are visible, not just the box


# -- errors ---------------------------------------------------------------------------------------


def test_inline_errors_stay_clear_of_other_nodes_and_the_error_panel(wide: tuple[Page, PageErrors]) -> None:
    page, errors = wide
    open_template(page, "default")
    loader = node_of_type(page, "CheckpointLoaderSimple")
    set_widget(page, loader, "ckpt_name", "my-model.safetensors")
    # Put the failing node where the error panel will open (bottom left of the canvas).
    page.evaluate("""id => { const {canvas, graph} = window.app; const n = graph.getNodeById(id);
        const r = canvas.canvas.getBoundingClientRect();
        const at = canvas.ds.convertCanvasToOffset([40, r.height - n.size[1] - 10]); n.pos = [at[0], at[1]];
        canvas.setDirty(true, true); }""", loader)
    page.click("#queue-button")
    panel = page.locator("#error-panel")
    # The refusal comes back from a real server's validation: give a loaded machine more than 5 s.
    expect(panel).to_be_visible(timeout=20_000)
    expect(panel).to_contain_text("put the model file (.safetensors, or a diffusers folder) in models/checkpoints/")
    wait_for_redraw(page)

    state = page.evaluate("""id => { const {canvas, graph, LiteGraph} = window.app;
        const s = window.app.execution.display.states.get(String(id)); const n = graph.getNodeById(id);
        const title = LiteGraph.NODE_TITLE_HEIGHT; const scale = canvas.ds.scale;
        const box = (x, y, w, h) => { const a = canvas.ds.convertOffsetToCanvas([x, y]);
          const r = canvas.canvas.getBoundingClientRect();
          return {left: r.left + a[0], top: r.top + a[1], right: r.left + a[0] + w * scale,
                  bottom: r.top + a[1] + h * scale}; };
        const others = graph.nodes.filter((o) => o !== n)
          .map((o) => [o.pos[0], o.pos[1] - title, o.size[0], o.size[1] + title]);
        return {error: s.error, errorBox: s.errorBox, others,
                node: box(n.pos[0], n.pos[1] - title, n.size[0], n.size[1] + title),
                text: s.errorBox && box(...s.errorBox)}; }""", loader)
    assert state["error"].startswith("'my-model.safetensors' is not in models/checkpoints/"), state["error"]
    assert state["errorBox"], "the inline error was not drawn"
    x, y, w, h = state["errorBox"]
    for ox, oy, ow, oh in state["others"]:
        assert not (x < ox + ow and ox < x + w and y < oy + oh and oy < y + h), (state["errorBox"], [ox, oy, ow, oh])
    covered = panel.bounding_box()
    for what in ("node", "text"):
        box = state[what]
        assert not (box["left"] < covered["x"] + covered["width"] and covered["x"] < box["right"]
                    and box["top"] < covered["y"] + covered["height"] and covered["y"] < box["bottom"]), \
            (what, box, covered)
        assert box["bottom"] <= WIDE["height"] and box["top"] >= 0
    assert any("status of 400" in message for message in errors.take())  # the refused queue


def test_empty_canvas_hint_and_no_debug_overlay(wide: tuple[Page, PageErrors]) -> None:
    page, _ = wide
    hint = page.locator("#empty-canvas-hint")
    expect(hint).to_be_hidden()  # the default workflow is open
    # litegraph's overlay (frame time, node counts, FPS) is not drawn in a frame.
    calls = page.evaluate("""() => new Promise((done) => { const {canvas} = window.app; let count = 0;
        const original = canvas.renderInfo;
        canvas.renderInfo = function (...args) { count++; return original.apply(this, args); };
        canvas.draw(true, true); requestAnimationFrame(() => { canvas.renderInfo = original; done(count); }); })""")
    assert calls == 0 and page.evaluate("() => window.app.canvas.show_info") is False
    page.click("#new-button")
    expect(hint).to_be_visible()
    expect(hint).to_contain_text("Double-click to add a node, or open a template")
    add_node_via_search(page, "Invert Image", "ImageInvert")
    expect(hint).to_be_hidden()
    page.click("#undo-button")
    page.wait_for_function("() => window.app.graph.nodes.length === 0")
    expect(hint).to_be_visible()
