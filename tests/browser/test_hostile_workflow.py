"""Workflow text is never markup (issue 13, §1): a shared workflow whose property names, node type,
slot names and types, titles and widget values are HTML, plus an uploaded image whose file name is
HTML, is opened in the canvas and every menu, dialog, panel and search that shows those strings is
opened. No element of the payload may appear in the DOM, no payload script may run, the tab may not
navigate, and the strings are shown as the text they are.

Every payload element carries `data-pwn`, so one selector finds any that got parsed; the `<img>`
payloads set `window.__pwned` from `onerror` (the test context bypasses the CSP, so a parsed one
would really run); the `<meta http-equiv=refresh>` would send the tab to elsewhere.example.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import Page, Request

from tests.browser.canvas_bridge import (
    drop_file,
    load_workflow,
    node_body_xy,
    open_search_box,
    show_node,
    slot_xy,
    title_xy,
    wait_for_redraw,
    widget_xy,
)

ELSEWHERE = "elsewhere.example"
META = f'<meta http-equiv="refresh" content="0;url=http://{ELSEWHERE}/" data-pwn="meta">'
FORM = f'<form data-pwn="form" action="http://{ELSEWHERE}/"><input data-pwn="input" name="q" value="go"></form>'
IMG = '<img src="x" onerror="window.__pwned = (window.__pwned || 0) + 1" data-pwn="img">'
# A file name cannot hold "/" and Chrome escapes '"' in multipart names, so this one goes without both.
UPLOAD_NAME = "<img src=x onerror=window.__pwned=1 data-pwn=upload>.png"

HOSTILE_TYPE = f"Hostile{FORM}"
PROPERTY_KEY = META
PROPERTY_VALUE = f"<b data-pwn='value'>{IMG}</b>"
INPUT_NAME = f"<i data-pwn='in'>in</i>{IMG}"
INPUT_TYPE = f"<u data-pwn='intype'>T</u>{META}"
OUTPUT_NAME = "<s data-pwn='out'>out</s>"
OUTPUT_TYPE = f"<em data-pwn='outtype'>T</em>{FORM}"
TITLE = f"Title {IMG}{META}"
INFO_LABEL = f"<b data-pwn='label'>label</b>{IMG}"
INFO_CHOICE = f"<option data-pwn='choice'>{IMG}</option>"

_PAYLOAD_IN_DOM = "() => Array.from(document.querySelectorAll('[data-pwn]')).map((e) => e.outerHTML.slice(0, 120))"


def hostile_workflow() -> dict[str, Any]:
    """A missing node type carrying markup everywhere, a LoadImage and a Note with markup titles and values."""
    def node(node_id: int, node_type: str, pos: list[int], **fields: Any) -> dict[str, Any]:
        return {"id": node_id, "type": node_type, "pos": pos, "size": [320, 160], "flags": {}, "order": node_id - 1,
                "mode": 0, "inputs": [], "outputs": [], "properties": {}, **fields}

    return {
        "last_node_id": 3, "last_link_id": 0,
        "nodes": [
            node(1, HOSTILE_TYPE, [100, 120], title=TITLE,
                 inputs=[{"name": INPUT_NAME, "type": INPUT_TYPE, "link": None}],
                 outputs=[{"name": OUTPUT_NAME, "type": OUTPUT_TYPE, "links": None}],
                 properties={PROPERTY_KEY: PROPERTY_VALUE, "plain": f"x{IMG}"},
                 # litegraph copies unknown node fields onto the node: a file can describe its properties.
                 properties_info=[{"name": "plain", "type": "combo", "label": INFO_LABEL,
                                   "values": [f"x{IMG}", INFO_CHOICE]}],
                 widgets_values=[PROPERTY_VALUE]),
            node(2, "LoadImage", [520, 120], title=f"Load {IMG}", properties={PROPERTY_KEY: "1"},
                 outputs=[{"name": "IMAGE", "type": "IMAGE", "links": None},
                          {"name": "MASK", "type": "MASK", "links": None}],
                 widgets_values=["example.png", "image"]),
            node(3, "Note", [100, 420], title=f"Note {FORM}", widgets_values=[f"note {IMG}{META}"]),
        ],
        "links": [], "groups": [], "config": {}, "extra": {}, "version": 0.4,
    }


@pytest.fixture
def watched(page: Page) -> Iterator[dict[str, list[str]]]:
    """Requests to elsewhere.example and main-frame navigations while the test runs."""
    seen: dict[str, list[str]] = {"requests": [], "navigations": []}

    def on_request(request: Request) -> None:
        if ELSEWHERE in request.url:
            seen["requests"].append(request.url)

    page.on("request", on_request)
    page.on("framenavigated", lambda frame: seen["navigations"].append(frame.url)
            if frame == page.main_frame else None)
    page.route(f"**://{ELSEWHERE}/**", lambda route: route.abort())
    yield seen


def assert_inert(page: Page, watched: dict[str, list[str]], start_url: str, step: str) -> None:
    """Nothing of the payload exists, ran or navigated after `step`."""
    wait_for_redraw(page)
    assert page.evaluate(_PAYLOAD_IN_DOM) == [], f"payload elements in the DOM after {step}"
    assert page.evaluate("() => window.__pwned") is None, f"a payload script ran after {step}"
    assert page.url == start_url and not watched["navigations"], f"navigated after {step}: {watched}"
    assert not watched["requests"], f"requests to {ELSEWHERE} after {step}: {watched['requests']}"


def menu_texts(page: Page) -> list[str]:
    """Title and entries of every open litegraph menu, as text."""
    return page.evaluate("""() => Array.from(document.querySelectorAll('.litecontextmenu'))
        .flatMap((menu) => Array.from(menu.querySelectorAll('.litemenu-title, .litemenu-entry'))
        .map((e) => e.textContent))""")


def close_menus(page: Page) -> None:
    page.keyboard.press("Escape")
    page.evaluate("() => { document.querySelectorAll('.litecontextmenu, .graphdialog, #node-panel')"
                  ".forEach((e) => e.close ? e.close() : e.remove()); }")


def open_node_menu(page: Page, node_id: int) -> None:
    page.mouse.click(*title_xy(page, node_id), button="right")
    page.locator(".litecontextmenu").first.wait_for()


def pick(page: Page, label: str) -> None:
    """Click the entry whose whole text is `label` in the newest menu."""
    menu = page.locator(".litecontextmenu").last
    menu.locator(".litemenu-entry").filter(has_text=re.compile(f"^{re.escape(label)}$")).first.click()


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 24), (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def test_markup_in_a_workflow_is_shown_as_text_everywhere(page: Page, watched: dict[str, list[str]]) -> None:
    start_url = page.url
    load_workflow(page, hostile_workflow(), name="hostile")
    show_node(page, 1, at=(120, 140))
    assert_inert(page, watched, start_url, "opening the workflow")

    # The node menu: its title is the node type.
    open_node_menu(page, 1)
    assert_inert(page, watched, start_url, "the node menu")
    assert HOSTILE_TYPE in menu_texts(page)

    # Properties submenu: property names and values; then the edit dialog of a property.
    pick(page, "Properties")
    page.wait_for_function("() => document.querySelectorAll('.litecontextmenu').length >= 2")
    assert_inert(page, watched, start_url, "the Properties menu")
    texts = menu_texts(page)
    assert PROPERTY_KEY + PROPERTY_VALUE in texts and INFO_LABEL + f"x{IMG}" in texts, texts
    page.locator(".litecontextmenu").last.locator(".litemenu-entry").filter(has_text=INFO_LABEL).first.click()
    dialog = page.locator(".graphdialog").last
    dialog.wait_for()
    assert_inert(page, watched, start_url, "the property edit dialog (combo)")
    assert dialog.locator(".name").text_content() == INFO_LABEL
    assert dialog.locator("option").all_text_contents() == [f"x{IMG}", INFO_CHOICE]
    close_menus(page)
    open_node_menu(page, 1)
    pick(page, "Properties")
    page.locator(".litecontextmenu").last.locator(".litemenu-entry").filter(has_text=PROPERTY_KEY).first.click()
    text_dialog = page.locator(".graphdialog").last
    text_dialog.wait_for()
    assert_inert(page, watched, start_url, "the property edit dialog (text)")
    assert text_dialog.locator(".name").text_content() == PROPERTY_KEY
    assert text_dialog.locator("input").input_value() == PROPERTY_VALUE
    close_menus(page)

    # Properties Panel: the node type heads it, the properties are listed.
    open_node_menu(page, 1)
    pick(page, "Properties Panel")
    panel = page.locator("#node-panel")
    panel.wait_for()
    assert_inert(page, watched, start_url, "the Properties Panel")
    assert panel.locator(".node_type").text_content() == HOSTILE_TYPE
    assert PROPERTY_KEY in panel.locator(".property_name").all_text_contents()
    close_menus(page)

    # Slot menus: the title is the slot type.
    for is_input, slot_type in ((True, INPUT_TYPE), (False, OUTPUT_TYPE)):
        page.mouse.click(*slot_xy(page, 1, is_input, 0), button="right")
        page.locator(".litecontextmenu").first.wait_for()
        assert_inert(page, watched, start_url, f"the {'input' if is_input else 'output'} slot menu")
        assert slot_type in menu_texts(page)
        close_menus(page)

    # An uploaded image whose name is markup: LoadImage lists it, and its combo menu shows it.
    show_node(page, 2, at=(120, 140))
    drop_file(page, UPLOAD_NAME, png_bytes(), "image/png", client_xy=node_body_xy(page, 2))
    page.wait_for_function("n => window.app.graph.getNodeById(2).widgets.find((w) => w.name === 'image').value === n",
                           arg=UPLOAD_NAME)
    assert_inert(page, watched, start_url, "the upload")
    page.mouse.click(*widget_xy(page, 2, "image"))
    page.locator(".litecontextmenu").first.wait_for()
    assert_inert(page, watched, start_url, "the combo menu")
    assert UPLOAD_NAME in menu_texts(page)
    close_menus(page)
    open_node_menu(page, 2)
    pick(page, "Properties")
    assert_inert(page, watched, start_url, "LoadImage's Properties menu")
    assert PROPERTY_KEY + "1" in menu_texts(page)
    close_menus(page)

    # The search box lists node types by title and type.
    open_search_box(page)
    page.locator(".litesearchbox input.value").fill("Load")
    page.locator(".litesearchbox .lite-search-item").first.wait_for()
    assert_inert(page, watched, start_url, "the search box")
    page.keyboard.press("Escape")


def test_litegraphs_type_filters_show_slot_types_as_text(page: Page, watched: dict[str, list[str]]) -> None:
    """litegraph's own search box with its slot-type filters (Flowmill filters by itself, but the
    library's box must be safe too): a registered slot type that is markup is an option's text."""
    start_url = page.url
    types = page.evaluate("""t => { const {LiteGraph, canvas} = window.app;
        LiteGraph.slot_types_in.push(t); LiteGraph.slot_types_out.push(t);
        canvas.constructor.active_canvas = canvas; // set by litegraph on any pointer event
        const proto = Object.getPrototypeOf(canvas).showSearchBox;
        const box = proto.call(canvas, new MouseEvent('dblclick'), {do_type_filter: true, type_filter_in: t});
        const texts = Array.from(box.querySelectorAll('select option'))
          .map((o) => [o.value, o.textContent, o.selected]);
        box.close(); return texts; }""", INPUT_TYPE)
    assert [INPUT_TYPE, INPUT_TYPE, True] in types and [INPUT_TYPE, INPUT_TYPE, False] in types
    assert_inert(page, watched, start_url, "litegraph's type-filtered search box")
