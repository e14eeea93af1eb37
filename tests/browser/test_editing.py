"""Editing on the canvas (issue 4, "Editing"), driven with the real mouse and keyboard where a user
would use them: the default workflow and its prompt editor, adding nodes (search box, category menu,
link release), connecting and refusing sockets, widgets (number prompt, combo menu, textarea, seed
control, image upload), undo/redo, bypass/mute, widget <-> input conversion, copy/paste, groups,
collapse, missing node types and named widget values.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from PIL import Image
from playwright.sync_api import Page, expect

from tests.browser.canvas_bridge import (
    add_node_via_search,
    connect,
    context_menu_pick,
    drag,
    drop_file,
    empty_canvas_xy,
    graph_nodes,
    input_slot,
    link_count,
    load_workflow,
    node_body_xy,
    open_search_box,
    select_node,
    serialized,
    set_widget,
    show_node,
    slot_xy,
    title_xy,
    to_page,
    undo_steps,
    wait_for_redraw,
    wait_for_undo_steps,
    widget_value,
    widget_xy,
)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TYPES = {1: "CheckpointLoaderSimple", 2: "CLIPTextEncode", 3: "CLIPTextEncode", 4: "EmptySD3LatentImage",
                 5: "KSampler", 6: "VAEDecode", 7: "SaveImage"}
CHECKPOINT, POSITIVE, LATENT, SAMPLER = 1, 2, 4, 5
AT_POSITION = "p => { const q = window.app.graph.getNodeById(5).pos; return q[0] === p[0] && q[1] === p[1]; }"


def default_workflow() -> dict[str, Any]:
    return json.loads((REPO / "workflows" / "default.json").read_text())


def default_values(node_id: int) -> list[Any]:
    """The widgets_values the shipped default workflow gives a node."""
    return next(node for node in default_workflow()["nodes"] if node["id"] == node_id)["widgets_values"]


POSITIVE_PROMPT = default_values(POSITIVE)[0]
SAMPLER_VALUES = default_values(SAMPLER)  # seed, control_after_generate, steps, cfg, sampler, scheduler, denoise


def set_view(page: Page, offset: tuple[float, float], scale: float) -> None:
    page.evaluate("([x, y, s]) => { const {ds} = window.app.canvas; ds.scale = s; ds.offset = [x, y]; }",
                  [offset[0], offset[1], scale])
    wait_for_redraw(page)


def move_node(page: Page, node_id: int, pos: tuple[float, float]) -> None:
    page.evaluate("([id, x, y]) => { window.app.graph.getNodeById(id).pos = [x, y]; }", [node_id, pos[0], pos[1]])
    wait_for_redraw(page)


def node_serialized(page: Page, node_id: int) -> dict[str, Any]:
    return next(node for node in serialized(page)["nodes"] if node["id"] == node_id)


def edit_number(page: Page, node_id: int, widget: str, text: str) -> None:
    """Click the middle of a number widget and answer litegraph's value prompt."""
    page.mouse.click(*widget_xy(page, node_id, widget))
    field = page.locator(".graphdialog input")
    field.fill(text)
    field.press("Enter")
    expect(field).to_have_count(0)


def node_rect_on_page(page: Page, node_id: int) -> tuple[float, float, float, float]:
    pos, size = page.evaluate("id => { const n = window.app.graph.getNodeById(id); return [Array.from(n.pos),"
                              " Array.from(n.size)]; }", node_id)
    left, top = to_page(page, (pos[0], pos[1]))
    right, bottom = to_page(page, (pos[0] + size[0], pos[1] + size[1]))
    return left, top, right, bottom


def test_default_workflow_opens_with_its_prompt_in_a_textarea(page: Page) -> None:
    assert {node["id"]: node["type"] for node in graph_nodes(page)} == DEFAULT_TYPES
    assert page.evaluate("() => window.app.graph.getNodeById(2).title") == "Positive prompt"
    show_node(page, POSITIVE)
    textarea = page.locator('textarea.app-multiline[data-node-id="2"]')
    expect(textarea).to_be_visible()
    expect(textarea).to_have_value(POSITIVE_PROMPT)
    box = textarea.bounding_box()
    assert box is not None
    left, top, right, bottom = node_rect_on_page(page, POSITIVE)
    assert left < box["x"] and box["x"] + box["width"] < right, (box, left, right)
    assert top < box["y"] and box["y"] + box["height"] <= bottom + 1, (box, top, bottom)


def test_textarea_follows_pan_and_zoom_and_hides_when_not_drawn(page: Page) -> None:
    textarea = page.locator('textarea.app-multiline[data-node-id="2"]')
    for at, scale in (((100, 100), 1.0), ((300, 200), 1.5), ((50, 300), 0.7)):
        show_node(page, POSITIVE, at=at, scale=scale)
        expect(textarea).to_be_visible()
        box = textarea.bounding_box()
        assert box is not None
        left, top, right, bottom = node_rect_on_page(page, POSITIVE)
        assert left < box["x"] < right and top < box["y"] < bottom, (scale, box, (left, top, right, bottom))
        # the textarea spans the node's width less the widget margins, scaled with the canvas
        assert abs(box["width"] - (right - left - 20 * scale)) < 2, (scale, box["width"], right - left)
    show_node(page, POSITIVE, scale=0.4)  # too small to edit: the canvas draws a placeholder
    expect(textarea).to_be_hidden()
    show_node(page, POSITIVE, at=(-2000, 100))  # off-screen
    expect(textarea).to_be_hidden()
    show_node(page, POSITIVE)
    expect(textarea).to_be_visible()
    page.evaluate("() => window.app.graph.getNodeById(2).collapse()")
    wait_for_redraw(page)
    expect(textarea).to_be_hidden()


def test_search_box_ranks_by_display_name_type_and_category(page: Page) -> None:
    open_search_box(page)
    box = page.locator(".litesearchbox input.value")
    box.fill("vae decode")
    first = page.locator(".litesearchbox .lite-search-item").first
    expect(first).to_contain_text("VAE Decode")
    expect(first.locator(".app-search-category")).to_have_text("latent")
    box.fill("EmptySD3LatentImage")  # by type name
    expect(first).to_contain_text("EmptySD3LatentImage")
    box.fill("upscaling")  # by category only
    expect(first.locator(".app-search-category")).to_have_text("image/upscaling")
    box.press("Escape")
    expect(page.locator(".litesearchbox")).to_have_count(0)
    node_id = add_node_via_search(page, "VAE Decode", "VAEDecode")
    assert node_id not in DEFAULT_TYPES


def test_add_node_from_the_category_menu(page: Page) -> None:
    before = {node["id"] for node in graph_nodes(page)}
    context_menu_pick(page, empty_canvas_xy(page), "Add Node", "latent", "Empty Latent Image")
    page.wait_for_function("n => window.app.graph.nodes.length > n", arg=len(before))
    added = [node for node in graph_nodes(page) if node["id"] not in before]
    assert [node["type"] for node in added] == ["EmptyLatentImage"]
    # the same menu offers groups and (on a link) reroutes
    page.mouse.click(*empty_canvas_xy(page), button="right")
    menu = page.locator(".litecontextmenu").last
    expect(menu.locator(".litemenu-entry", has_text="Add Group")).to_have_count(1)
    expect(menu.locator(".litemenu-entry.disabled", has_text="Add Reroute")).to_have_count(1)


def test_connect_sockets_by_dragging_and_refuse_a_mismatched_pair(page: Page) -> None:
    sampler = add_node_via_search(page, "KSampler", "KSampler")
    move_node(page, sampler, (860, 430))
    set_view(page, (12, 12), 0.8)
    links = link_count(page)
    connect(page, LATENT, 0, sampler, 0)  # LATENT output onto the MODEL input: refused
    assert page.evaluate("id => window.app.graph.getNodeById(id).inputs[0].link", sampler) is None
    assert link_count(page) == links
    connect(page, CHECKPOINT, 0, sampler, 0)  # MODEL onto MODEL
    link_id = page.evaluate("id => window.app.graph.getNodeById(id).inputs[0].link", sampler)
    assert link_id is not None
    saved_links = serialized(page)["links"]
    assert [link_id, CHECKPOINT, 0, sampler, 0, "MODEL"] in saved_links
    connect(page, LATENT, 0, sampler, input_slot(page, sampler, "latent_image"))
    assert page.evaluate("id => window.app.graph.getNodeById(id).inputs[3].link", sampler) is not None


def test_releasing_a_link_on_empty_canvas_offers_only_matching_nodes(page: Page) -> None:
    show_node(page, SAMPLER, at=(120, 120))
    start = slot_xy(page, SAMPLER, False, 0)  # LATENT output
    drag(page, start, (start[0] + 160, start[1] + 380))
    box = page.locator(".litesearchbox")
    expect(box).to_be_visible()
    expect(box.locator(".name")).to_have_text("Search (input LATENT)")
    items = box.locator(".lite-search-item")
    expect(items.first).to_be_visible()
    titles = items.all_inner_texts()
    assert any("VAE Decode" in title for title in titles), titles
    assert not any("Load Checkpoint" in title or "CLIP Text Encode" in title for title in titles), titles
    before = {node["id"] for node in graph_nodes(page)}
    box.locator("input.value").fill("vae decode")
    expect(items.first).to_contain_text("VAE Decode")
    box.locator("input.value").press("Enter")
    page.wait_for_function("n => window.app.graph.nodes.length > n", arg=len(before))
    added = [node for node in graph_nodes(page) if node["id"] not in before]
    assert [node["type"] for node in added] == ["VAEDecode"]
    origin = page.evaluate("id => { const g = window.app.graph;"
                           " const l = g.links.get(g.getNodeById(id).inputs[0].link);"
                           " return l && [l.origin_id, l.type]; }", added[0]["id"])
    assert origin == [SAMPLER, "LATENT"]


def test_change_number_combo_and_text_widgets(page: Page) -> None:
    show_node(page, SAMPLER)
    edit_number(page, SAMPLER, "steps", "2*15")  # the prompt takes arithmetic, without eval
    assert widget_value(page, SAMPLER, "steps") == 30
    edit_number(page, SAMPLER, "cfg", "5.4321")  # rounded to the schema's 0.01
    assert widget_value(page, SAMPLER, "cfg") == 5.43
    values = page.evaluate("() => window.app.graph.getNodeById(5).widgets.find((w) => w.name === 'scheduler')"
                           ".options.values")
    choice = next(value for value in values if value != widget_value(page, SAMPLER, "scheduler"))
    page.mouse.click(*widget_xy(page, SAMPLER, "scheduler"))
    page.locator(".litecontextmenu").last.get_by_text(choice, exact=True).click()
    assert widget_value(page, SAMPLER, "scheduler") == choice
    saved = node_serialized(page, SAMPLER)
    assert saved["widgets_values"][2:4] == [30, 5.43] and saved["widgets_values"][5] == choice
    assert saved["properties"]["widget_values"]["steps"] == 30

    show_node(page, POSITIVE)
    textarea = page.locator('textarea.app-multiline[data-node-id="2"]')
    textarea.click()
    textarea.press("Control+a")
    page.keyboard.type("a small green square")
    assert widget_value(page, POSITIVE, "text") == "a small green square"
    assert node_serialized(page, POSITIVE)["widgets_values"] == ["a small green square"]


def test_seed_control_after_queueing(page: Page) -> None:
    seed = SAMPLER_VALUES[0]
    saved = node_serialized(page, SAMPLER)
    assert saved["widgets_values"][:2] == [seed, "fixed"]  # the control value follows the seed, as in ComfyUI
    after_queued = "() => window.app.nodes.afterQueued()"
    page.evaluate(after_queued)
    assert widget_value(page, SAMPLER, "seed") == seed  # fixed
    set_widget(page, SAMPLER, "control_after_generate", "increment")
    page.evaluate(after_queued)
    assert widget_value(page, SAMPLER, "seed") == seed + 1
    set_widget(page, SAMPLER, "control_after_generate", "randomize")
    seeds = set()
    for _ in range(3):
        page.evaluate(after_queued)
        seeds.add(widget_value(page, SAMPLER, "seed"))
    assert len(seeds) == 3 and seed + 1 not in seeds, seeds
    seed = widget_value(page, SAMPLER, "seed")
    assert node_serialized(page, SAMPLER)["widgets_values"][:2] == [seed, "randomize"]
    # a bypassed sampler's seed does not move
    page.evaluate("() => { window.app.graph.getNodeById(5).mode = 4; }")
    page.evaluate(after_queued)
    assert widget_value(page, SAMPLER, "seed") == seed


def test_undo_and_redo_an_added_node(page: Page) -> None:
    count = len(graph_nodes(page))
    steps = undo_steps(page)
    add_node_via_search(page, "VAE Decode", "VAEDecode")
    wait_for_undo_steps(page, steps + 1)
    page.keyboard.press("Control+z")
    page.wait_for_function("n => window.app.graph.nodes.length === n", arg=count)
    page.keyboard.press("Control+y")
    page.wait_for_function("n => window.app.graph.nodes.length === n", arg=count + 1)
    page.locator("#undo-button").click()
    page.wait_for_function("n => window.app.graph.nodes.length === n", arg=count)
    expect(page.locator("#redo-button")).to_be_enabled()


def test_undo_and_redo_a_move_keeps_the_view(page: Page) -> None:
    show_node(page, SAMPLER)
    before = page.evaluate("() => Array.from(window.app.graph.getNodeById(5).pos)")
    steps = undo_steps(page)
    start = title_xy(page, SAMPLER)
    drag(page, start, (start[0] + 120, start[1] + 60))
    moved = page.evaluate("() => Array.from(window.app.graph.getNodeById(5).pos)")
    assert moved != before
    wait_for_undo_steps(page, steps + 1)
    view = page.evaluate("() => [...window.app.canvas.ds.offset, window.app.canvas.ds.scale]")
    page.keyboard.press("Control+z")
    page.wait_for_function(AT_POSITION, arg=before)
    assert page.evaluate("() => [...window.app.canvas.ds.offset, window.app.canvas.ds.scale]") == view
    page.keyboard.press("Control+Shift+z")
    page.wait_for_function(AT_POSITION, arg=moved)


def test_undo_and_redo_a_link_and_a_widget_change(page: Page) -> None:
    sampler = add_node_via_search(page, "KSampler", "KSampler")
    move_node(page, sampler, (860, 430))
    set_view(page, (12, 12), 0.8)
    steps = undo_steps(page)
    connect(page, CHECKPOINT, 0, sampler, 0)
    assert page.evaluate("id => window.app.graph.getNodeById(id).inputs[0].link", sampler) is not None
    wait_for_undo_steps(page, steps + 1)
    page.keyboard.press("Control+z")
    page.wait_for_function("id => window.app.graph.getNodeById(id).inputs[0].link == null", arg=sampler)
    page.keyboard.press("Control+y")
    page.wait_for_function("id => window.app.graph.getNodeById(id).inputs[0].link != null", arg=sampler)

    show_node(page, SAMPLER)
    steps = undo_steps(page)
    edit_number(page, SAMPLER, "steps", "42")
    wait_for_undo_steps(page, steps + 1)
    page.mouse.click(*empty_canvas_xy(page))  # the canvas has the keyboard
    page.keyboard.press("Control+z")
    page.wait_for_function("s => window.app.graph.getNodeById(5).widgets.find((w) => w.name === 'steps').value === s",
                           arg=SAMPLER_VALUES[2])
    page.keyboard.press("Control+Shift+z")
    page.wait_for_function("() => window.app.graph.getNodeById(5).widgets.find((w) => w.name === 'steps').value === 42")


def test_undo_a_prompt_edit(page: Page) -> None:
    show_node(page, POSITIVE)
    steps = undo_steps(page)
    textarea = page.locator('textarea.app-multiline[data-node-id="2"]')
    textarea.fill("a blue triangle")
    page.mouse.click(*empty_canvas_xy(page))  # leaving the field ends the edit
    wait_for_undo_steps(page, steps + 1)
    page.keyboard.press("Control+z")
    expect(page.locator('textarea.app-multiline[data-node-id="2"]')).to_have_value(POSITIVE_PROMPT)


def test_bypass_and_mute_shortcuts(page: Page) -> None:
    show_node(page, SAMPLER)
    select_node(page, SAMPLER)
    page.keyboard.press("Control+b")
    assert page.evaluate("() => window.app.graph.getNodeById(5).mode") == 4
    assert node_serialized(page, SAMPLER)["mode"] == 4
    page.keyboard.press("Control+b")
    assert page.evaluate("() => window.app.graph.getNodeById(5).mode") == 0
    page.keyboard.press("Control+m")
    assert page.evaluate("() => window.app.graph.getNodeById(5).mode") == 2
    page.keyboard.press("Control+m")
    assert page.evaluate("() => window.app.graph.getNodeById(5).mode") == 0


def test_group_and_collapse_shortcuts(page: Page) -> None:
    show_node(page, SAMPLER)
    select_node(page, SAMPLER)
    page.keyboard.press("Alt+c")
    assert page.evaluate("() => !!window.app.graph.getNodeById(5).flags.collapsed")
    page.keyboard.press("Alt+c")
    assert not page.evaluate("() => !!window.app.graph.getNodeById(5).flags.collapsed")
    page.keyboard.press("Control+g")
    groups = serialized(page)["groups"]
    assert len(groups) == 1
    inside = page.evaluate("() => window.app.graph.groups[0].nodes.map((n) => n.id)")
    assert inside == [SAMPLER]


def test_convert_a_widget_to_an_input_and_back(page: Page) -> None:
    primitive = add_node_via_search(page, "Int", "PrimitiveInt")
    show_node(page, SAMPLER, at=(420, 140))
    # Right of the sampler's socket column, in the empty space beside VAE Decode and Save Image.
    sampler_x, sampler_y = page.evaluate("() => window.app.graph.getNodeById(5).pos")
    move_node(page, primitive, (sampler_x + 290, sampler_y + 330))
    context_menu_pick(page, node_body_xy(page, SAMPLER), "Convert Widget to Input", "steps")
    slot = input_slot(page, SAMPLER, "steps")
    assert slot >= 0
    widget_of_slot = "([id, s]) => window.app.graph.getNodeById(id).inputs[s].widget.name"
    assert page.evaluate(widget_of_slot, [SAMPLER, slot]) == "steps"
    wait_for_redraw(page)
    connect(page, primitive, 0, SAMPLER, slot)
    link = page.evaluate("([id, s]) => window.app.graph.getNodeById(id).inputs[s].link", [SAMPLER, slot])
    assert link is not None
    saved = node_serialized(page, SAMPLER)
    assert {"name": "steps", "widget": {"name": "steps"}, "link": link}.items() <= saved["inputs"][slot].items()
    assert len(saved["widgets_values"]) == 7  # the widget keeps its place in widgets_values
    context_menu_pick(page, node_body_xy(page, SAMPLER), "Convert Input to Widget", "steps")
    assert input_slot(page, SAMPLER, "steps") == -1
    assert page.evaluate("l => window.app.graph.links.get(l) == null", link)


def test_a_workflow_linking_into_a_widget_input_loads(page: Page) -> None:
    workflow = default_workflow()
    workflow["nodes"].append({"id": 8, "type": "PrimitiveInt", "pos": [600, 480], "size": [210, 60], "flags": {},
                              "order": 7, "mode": 0, "inputs": [],
                              "outputs": [{"name": "INT", "type": "INT", "links": [10]}],
                              "properties": {}, "widgets_values": [1234]})
    sampler = next(node for node in workflow["nodes"] if node["id"] == SAMPLER)
    sampler["inputs"].append({"name": "seed", "type": "INT", "widget": {"name": "seed"}, "link": 10})
    workflow["links"].append([10, 8, 0, SAMPLER, 4, "INT"])
    workflow["last_node_id"], workflow["last_link_id"] = 8, 10
    load_workflow(page, workflow)
    assert page.evaluate("() => window.app.graph.getNodeById(5).inputs[4].link") == 10
    show_node(page, SAMPLER)
    assert page.evaluate("() => window.app.graph.getNodeById(5).widgets[0].computedDisabled") is True
    saved = serialized(page)
    assert [10, 8, 0, SAMPLER, 4, "INT"] in saved["links"]
    assert node_serialized(page, SAMPLER)["widgets_values"][:2] == SAMPLER_VALUES[:2]


def test_copy_and_paste_duplicates_a_node(page: Page) -> None:
    show_node(page, SAMPLER)
    set_widget(page, SAMPLER, "steps", 33)
    select_node(page, SAMPLER)
    page.keyboard.press("Control+c")
    page.mouse.move(*empty_canvas_xy(page))
    page.keyboard.press("Control+v")
    page.wait_for_function("() => window.app.graph.nodes.filter((n) => n.type === 'KSampler').length === 2")
    copy_node = next(node for node in graph_nodes(page) if node["type"] == "KSampler" and node["id"] != SAMPLER)
    assert dict(copy_node["widgets"])["steps"] == 33


def test_a_workflow_with_an_unknown_node_type_opens_with_it_marked(page: Page) -> None:
    workflow = default_workflow()
    workflow["nodes"].append({"id": 8, "type": "FancyUpscaler", "title": "Fancy", "pos": [1220, 300],
                              "size": [240, 80], "flags": {}, "order": 7, "mode": 0,
                              "inputs": [{"name": "image", "type": "IMAGE", "link": None}],
                              "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": []}],
                              "properties": {"scale": 2}, "widgets_values": [2, "lanczos"]})
    workflow["last_node_id"] = 8
    assert page.evaluate("wf => window.app.nodes.missingTypes(wf)", workflow) == ["FancyUpscaler"]
    assert page.evaluate("wf => window.app.nodes.missingTypes(wf)", default_workflow()) == []
    load_workflow(page, workflow)
    assert {node["id"]: node["type"] for node in graph_nodes(page)} == {**DEFAULT_TYPES, 8: "FancyUpscaler"}
    assert page.evaluate("() => window.app.graph.getNodeById(8).isMissing") is True
    assert page.evaluate("() => window.app.graph.getNodeById(8).renderingColor") == "#a33"
    saved = node_serialized(page, 8)
    assert saved["widgets_values"] == [2, "lanczos"] and saved["properties"] == {"scale": 2}
    assert saved["title"] == "Fancy" and saved["inputs"][0]["type"] == "IMAGE"
    expect(page.locator("#error-panel")).to_contain_text("FancyUpscaler")  # helper C's report
    page.evaluate("() => window.app.ui.clearError()")
    # the missing type is not offered as a node to add
    open_search_box(page)
    page.locator(".litesearchbox input.value").fill("upscale")
    items = page.locator(".litesearchbox .lite-search-item")
    expect(items.first).to_contain_text("Upscale")
    assert not any("FancyUpscaler" in text for text in items.all_inner_texts())


def test_widget_values_by_name_win_over_positions(page: Page) -> None:
    saved = node_serialized(page, SAMPLER)
    names = ["seed", "seed.control_after_generate", "steps", "cfg", "sampler_name", "scheduler", "denoise"]
    assert saved["properties"]["widget_values"] == dict(zip(names, SAMPLER_VALUES, strict=True))
    workflow = default_workflow()
    sampler = next(node for node in workflow["nodes"] if node["id"] == SAMPLER)
    # positions from an older definition (an extra value up front), names that say what is what
    sampler["widgets_values"] = ["stale", 7, "fixed", 12, 3.5, "euler", "simple", 0.5]
    sampler["properties"]["widget_values"] = {"seed": 7, "seed.control_after_generate": "increment", "steps": 12,
                                              "cfg": 3.5, "sampler_name": "euler", "scheduler": "simple",
                                              "denoise": 0.5}
    load_workflow(page, workflow)
    values = dict(next(node for node in graph_nodes(page) if node["id"] == SAMPLER)["widgets"])
    assert values == {"seed": 7, "control_after_generate": "increment", "steps": 12, "cfg": 3.5,
                      "sampler_name": "euler", "scheduler": "simple", "denoise": 0.5}
    # a ComfyUI file without names, and without the control value, still loads by position
    workflow = copy.deepcopy(default_workflow())
    sampler = next(node for node in workflow["nodes"] if node["id"] == SAMPLER)
    sampler["properties"] = {}
    sampler["widgets_values"] = [9, 15, 6.0, "euler", "simple", 0.75]
    load_workflow(page, workflow)
    values = dict(next(node for node in graph_nodes(page) if node["id"] == SAMPLER)["widgets"])
    assert (values["seed"], values["steps"], values["cfg"], values["denoise"]) == (9, 15, 6.0, 0.75)


def test_load_image_upload_and_preview(page: Page, tmp_path: Path) -> None:
    image = tmp_path / "uploaded.png"
    Image.new("RGB", (40, 24), (200, 60, 30)).save(image)
    loader = add_node_via_search(page, "Load Image", "LoadImage")
    show_node(page, loader)
    page.wait_for_function("id => window.app.graph.getNodeById(id).imagePreview.loaded", arg=loader)
    with page.expect_file_chooser() as chooser:
        page.mouse.click(*widget_xy(page, loader, "upload"))
    chooser.value.set_files(str(image))
    page.wait_for_function("id => { const w = window.app.graph.getNodeById(id).widgets[0];"
                           " return w.value !== 'example.png' && w.options.values.includes(w.value); }", arg=loader)
    uploaded = widget_value(page, loader, "image")
    assert uploaded.startswith("uploaded") and uploaded.endswith(".png")
    page.wait_for_function("([id, name]) => { const p = window.app.graph.getNodeById(id).imagePreview;"
                           " return p.loaded && p.url.includes(encodeURIComponent(name)); }", arg=[loader, uploaded])
    assert page.evaluate("id => window.app.graph.getNodeById(id).imagePreview.naturalSize", loader) == [40, 24]
    assert node_serialized(page, loader)["widgets_values"] == [uploaded]
    # an image file dropped on the node is uploaded too (and not opened as a workflow)
    dropped = tmp_path / "dropped.png"
    Image.new("RGB", (30, 50), (20, 160, 90)).save(dropped)
    drop_file(page, "dropped.png", dropped.read_bytes(), "image/png", client_xy=node_body_xy(page, loader))
    page.wait_for_function("id => { const p = window.app.graph.getNodeById(id).imagePreview;"
                           " return p.loaded && p.url.includes('dropped') && p.naturalSize[1] === 50; }", arg=loader)
    assert widget_value(page, loader, "image").startswith("dropped")
    assert page.evaluate("() => window.app.workflow.name") != "dropped"
    # picking another file in the combo previews that one
    page.mouse.click(*widget_xy(page, loader, "image"))
    page.locator(".litecontextmenu").last.get_by_text("example.png", exact=True).click()
    page.wait_for_function("id => { const p = window.app.graph.getNodeById(id).imagePreview;"
                           " return p.loaded && p.url.includes('filename=example.png'); }", arg=loader)
