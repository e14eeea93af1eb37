"""Running workflows from the canvas (issue 4, "Running"): queue with a batch count, the executing
highlight, progress, latent previews, output images, cached marks, validation and runtime errors,
the queue and history panel (cancel, interrupt, thumbnails, reopen, delete) and reconnecting after a
server restart. Everything waits on real conditions: the app's run log, node state, DOM, the server.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.api.server_process import ServerProcess
from tests.browser.canvas_bridge import (
    execution_log,
    load_workflow,
    node_of_type,
    set_widget,
    wait_for_runs_ended,
)
from tests.browser.conftest import REPO, VIEWPORT, PageErrors

RUN_TIMEOUT_MS = 90_000
CONTROL_VALUES = ["fixed", "increment", "decrement", "randomize"]

# True when litegraph would draw the node with the executing outline right now.
_OUTLINED = "id => { const n = window.app.graph.getNodeById(id); return !!n?.strokeStyles?.executing?.call(n); }"
_OUTPUT_LOADED = """id => { const img = window.app.graph.getNodeById(id)?.imgs?.[0];
    return !!img && img.complete && img.naturalWidth > 0; }"""


def unique_seed() -> int:
    """A seed no earlier test used, so the sampler really runs instead of coming from the cache."""
    return random.randrange(1, 2**31)


def slow_seconds() -> float:
    """A SlowPassthrough duration near 5 s that no earlier test used (a cached node would not wait)."""
    return round(5.0 + random.randrange(1, 200) * 0.05, 2)


def image_chain(middle: str, middle_widgets: list[Any]) -> dict[str, Any]:
    """LoadImage(example.png) -> `middle` -> PreviewImage, as a canvas (UI-format) workflow."""
    def node(node_id: int, node_type: str, x: int, inputs: list[dict], outputs: list[dict],
             widgets: list[Any]) -> dict[str, Any]:
        return {"id": node_id, "type": node_type, "pos": [x, 120], "size": [300, 280], "flags": {},
                "order": node_id - 1, "mode": 0, "inputs": inputs, "outputs": outputs,
                "properties": {"Node name for S&R": node_type}, "widgets_values": widgets}

    return {
        "last_node_id": 3, "last_link_id": 2,
        "nodes": [
            node(1, "LoadImage", 40, [], [{"name": "IMAGE", "type": "IMAGE", "links": [1], "slot_index": 0},
                                          {"name": "MASK", "type": "MASK", "links": None, "slot_index": 1}],
                 ["example.png", "image"]),
            node(2, middle, 400, [{"name": "image", "type": "IMAGE", "link": 1}],
                 [{"name": "IMAGE", "type": "IMAGE", "links": [2], "slot_index": 0}], middle_widgets),
            node(3, "PreviewImage", 760, [{"name": "images", "type": "IMAGE", "link": 2}], [], []),
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]],
        "groups": [], "config": {}, "extra": {}, "version": 0.4,
    }


def images_drawn(page: Page, node_id: int) -> int:
    """How many of the node's images the canvas draws in one forced frame (the node is centred first)."""
    return page.evaluate("""id => { const {canvas, graph} = window.app; const node = graph.getNodeById(id);
        const box = canvas.canvas.getBoundingClientRect();
        canvas.ds.offset[0] = box.width / (2 * canvas.ds.scale) - (node.pos[0] + node.size[0] / 2);
        canvas.ds.offset[1] = box.height / (2 * canvas.ds.scale) - (node.pos[1] + node.size[1] / 2);
        const state = window.app.execution.display.states.get(String(id));
        const sources = new Set([...(node.imgs || []), state?.preview?.image,
                                 ...(state?.outputs || []).map((s) => s.thumbnail)].filter(Boolean));
        canvas.draw(true, true); // a node drawn for the first time lays its widgets out first
        const ctx = canvas.ctx; const original = ctx.drawImage; let hits = 0;
        ctx.drawImage = function (source, ...rest) {
          if (sources.has(source)) hits++;
          return original.call(this, source, ...rest); };
        try { canvas.draw(true, true); } finally { ctx.drawImage = original; }
        return hits; }""", node_id)


def queue_and_wait(page: Page, runs_before: int) -> None:
    page.click("#queue-button")
    wait_for_runs_ended(page, runs_before + 1, timeout=RUN_TIMEOUT_MS)


def test_queue_shows_executing_progress_preview_and_output(page: Page) -> None:
    ksampler = node_of_type(page, "KSampler")
    save = node_of_type(page, "SaveImage")
    set_widget(page, ksampler, "seed", unique_seed())

    page.click("#queue-button")
    page.wait_for_function(_OUTPUT_LOADED, arg=save, timeout=RUN_TIMEOUT_MS)
    wait_for_runs_ended(page, 1, timeout=RUN_TIMEOUT_MS)

    log = execution_log(page)
    # (The websocket may announce the start before the POST's reply lands: the order of those two is free.)
    milestones = sorted(entry["type"] for entry in log
                        if entry["type"] in ("queued", "execution_start", "execution_success"))
    assert milestones == ["execution_start", "execution_success", "queued"], log
    on_sampler = [entry for entry in log if entry.get("node") == str(ksampler)]
    assert any(entry["type"] == "executing" and entry["highlighted"] for entry in on_sampler), log
    progress = [entry["nodeProgress"] for entry in on_sampler if entry["type"] == "progress"]
    assert progress and max(progress) == 1 and min(progress) < 1, progress
    previews = [entry for entry in on_sampler if entry["type"] == "preview"]
    assert previews and previews[-1]["width"] > 0, "no latent preview reached the KSampler node"
    assert any(entry["type"] == "executed" and entry["node"] == str(save) and entry["images"] == 1 for entry in log)

    # Done: nothing outlined, no progress bar left; the output and the sampler's preview are drawn.
    assert not page.evaluate(f"() => window.app.graph.nodes.some((n) => ({_OUTLINED})(n.id) || n.progress)")
    src = page.evaluate("id => window.app.graph.getNodeById(id).imgs[0].src", save)
    assert "/api/view?" in src and "type=output" in src, src
    assert images_drawn(page, save) == 1
    assert images_drawn(page, ksampler) == 1
    # They survive the graph being rebuilt from JSON, as undo does.
    page.evaluate("() => window.app.graph.configure(window.app.graph.serialize())")
    page.wait_for_function(_OUTPUT_LOADED, arg=save)
    assert images_drawn(page, save) == 1


def test_requeue_unchanged_marks_cached_nodes(page: Page) -> None:
    ksampler = node_of_type(page, "KSampler")
    loader = node_of_type(page, "CheckpointLoaderSimple")
    set_widget(page, ksampler, "seed", unique_seed())
    queue_and_wait(page, 0)
    assert not execution_log(page, "cached") or str(ksampler) not in execution_log(page, "cached")[-1]["nodes"]

    queue_and_wait(page, 1)
    cached = execution_log(page, "cached")[-1]["nodes"]
    assert str(ksampler) in cached and str(loader) in cached, cached
    badges = page.evaluate("""ids => ids.map((id) => window.app.graph.getNodeById(id).badges
        .map((b) => (typeof b === "function" ? b() : b).text).filter(Boolean))""", [ksampler, loader])
    assert badges == [["cached"], ["cached"]], badges
    # The next run starts by clearing the marks.
    set_widget(page, ksampler, "seed", unique_seed())
    queue_and_wait(page, 2)
    assert page.evaluate("id => !window.app.execution.display.states.get(String(id)).cached", ksampler)


def refused_prompts_only(errors: PageErrors) -> None:
    """Drain the page's console errors, allowing only Chromium's notes on the refused POST /prompt (400)."""
    unexpected = [message for message in errors.take() if "status of 400 (Bad Request)" not in message]
    assert not unexpected, unexpected


def test_validation_error_outlines_node_and_input_before_running(page: Page, server: ServerProcess,
                                                                  page_errors: list[PageErrors]) -> None:
    loader = node_of_type(page, "CheckpointLoaderSimple")
    ksampler = node_of_type(page, "KSampler")
    history_before = len(server.get("/api/history"))
    set_widget(page, loader, "ckpt_name", "no-such-model.safetensors")

    page.click("#queue-button")
    panel = page.locator("#error-panel")
    panel.wait_for(state="visible")
    assert "no-such-model.safetensors" in panel.inner_text()
    entry = panel.locator(f'.error-node[data-node-id="{loader}"]')
    title = page.evaluate("id => window.app.graph.getNodeById(id).title", loader)
    assert title in entry.inner_text()
    assert page.evaluate("id => window.app.graph.getNodeById(id).has_errors === true", loader)
    assert page.evaluate("id => [...window.app.execution.display.states.get(String(id)).inputErrors]", loader) \
        == ["ckpt_name"]
    # Refused before anything ran: nothing queued, no execution_start, nothing new in history.
    assert not execution_log(page, "queued") and not execution_log(page, "execution_start")
    assert len(server.get("/api/history")) == history_before

    # Clicking the entry brings the node into view and selects it.
    page.evaluate("() => { window.app.canvas.ds.offset[0] = -5000; window.app.canvas.deselectAll(); }")
    entry.click()
    assert page.evaluate("id => !!window.app.graph.getNodeById(id).selected", loader)
    node_center = page.evaluate("""id => { const n = window.app.graph.getNodeById(id);
        return window.app.canvas.ds.convertOffsetToCanvas([n.pos[0] + n.size[0] / 2, n.pos[1]]); }""", loader)
    box = page.evaluate("() => { const r = window.app.canvas.canvas.getBoundingClientRect();"
                        " return [r.width, r.height]; }")
    assert 0 < node_center[0] < box[0] and 0 < node_center[1] < box[1]

    # A missing link marks the socket's input on its node.
    set_widget(page, loader, "ckpt_name", "flowmill-shapes-demo")
    page.evaluate("id => { const n = window.app.graph.getNodeById(id); n.disconnectInput(n.findInputSlot('model')); }",
                  ksampler)
    page.click("#queue-button")
    page.wait_for_function("id => window.app.graph.getNodeById(id).has_errors === true", arg=ksampler)
    assert page.evaluate("id => [...window.app.execution.display.states.get(String(id)).inputErrors]", ksampler) \
        == ["model"]
    assert not page.evaluate("id => window.app.graph.getNodeById(id).has_errors", loader)
    assert f'data-node-id="{ksampler}"' in panel.inner_html()
    assert not execution_log(page, "execution_start")

    refused_prompts_only(page_errors[0])

    # Fixed and queued: the marks and the panel go away, and it runs.
    page.evaluate("([a, b]) => { const g = window.app.graph; const k = g.getNodeById(b);"
                  " g.getNodeById(a).connect(0, k, k.findInputSlot('model')); }", [loader, ksampler])
    set_widget(page, ksampler, "seed", unique_seed())
    queue_and_wait(page, 0)
    assert panel.is_hidden()
    assert not page.evaluate("() => window.app.graph.nodes.some((n) => n.has_errors)")
    assert execution_log(page, "execution_success")


def test_runtime_error_outlines_failing_node_with_message(page: Page) -> None:
    message = f"broken on purpose {unique_seed()}"
    load_workflow(page, image_chain("FailOnPurpose", [message]), "fails")
    page.click("#queue-button")
    wait_for_runs_ended(page, 1, timeout=RUN_TIMEOUT_MS)

    error = execution_log(page, "execution_error")[-1]
    assert error["node"] == "2" and message in error["message"]
    assert page.evaluate("() => window.app.graph.getNodeById(2).has_errors === true")
    assert not page.evaluate("() => window.app.graph.getNodeById(1).has_errors")
    panel = page.locator("#error-panel")
    panel.wait_for(state="visible")
    title = page.evaluate("() => window.app.graph.getNodeById(2).title")
    assert title in panel.locator('.error-node[data-node-id="2"]').inner_text()
    assert message in panel.inner_text()
    # Dismissible.
    panel.locator(".error-close").click()
    assert panel.is_hidden()


def test_flowturbo_without_refiner_says_so_in_a_toast(page: Page) -> None:
    prompt = json.loads((REPO / "workflows" / "flowturbo_api.json").read_text())
    del prompt["7"]  # the VelocityRefinerLoader: its refiner steps now run as pseudo-corrector steps
    del prompt["8"]["inputs"]["refiner"]
    prompt["5"]["inputs"]["noise_seed"] = unique_seed()
    page.evaluate("wf => window.app.workflow.load(wf, {name: 'flowturbo'})", prompt)
    page.wait_for_function("n => window.app.graph.nodes.length === n", arg=len(prompt))
    queue_and_wait(page, 0)

    assert execution_log(page, "execution_success")
    page.locator(".toast", has_text="no velocity refiner is connected").wait_for()
    assert "pseudo-corrector" in page.locator(".toast", has_text="no velocity refiner").first.inner_text()


def test_an_editor_workflow_runs_from_the_canvas_with_progress_on_the_editor(page: Page) -> None:
    prompt = json.loads((REPO / "workflows" / "rf_edit_api.json").read_text())
    editor = prompt["7"]
    assert editor["class_type"] == "RFEdit"
    editor["inputs"].update(steps=4, inject=2, target_cfg=round(3.0 + random.randrange(1, 100) / 100, 2))
    page.evaluate("wf => window.app.workflow.load(wf, {name: 'rf_edit'})", prompt)
    page.wait_for_function("n => window.app.graph.nodes.length === n", arg=len(prompt))
    editor_id = node_of_type(page, "RFEdit")
    assert page.evaluate("id => window.app.graph.getNodeById(id).widgets.map((w) => w.name)", editor_id)[-2:] == [
        "blocks", "feature_bank"]
    save = node_of_type(page, "SaveImage")
    page.click("#queue-button")
    page.wait_for_function(_OUTPUT_LOADED, arg=save, timeout=RUN_TIMEOUT_MS)
    wait_for_runs_ended(page, 1, timeout=RUN_TIMEOUT_MS)

    assert execution_log(page, "execution_success")
    progress = [entry["nodeProgress"] for entry in execution_log(page, "progress")
                if entry.get("node") == str(editor_id)]
    assert progress and max(progress) == 1 and min(progress) <= 0.5  # inversion and denoising on one bar


def test_batch_count_queues_one_prompt_per_item_each_with_its_seed(page: Page, server: ServerProcess) -> None:
    ksampler = node_of_type(page, "KSampler")
    first_seed = unique_seed()
    set_widget(page, ksampler, "seed", first_seed)
    control = page.evaluate("([id, values]) => window.app.graph.getNodeById(id).widgets"
                            ".find((w) => values.includes(w.value))?.name", [ksampler, CONTROL_VALUES])
    assert control, "KSampler has no control_after_generate widget"
    set_widget(page, ksampler, control, "increment")

    page.fill("#batch-count", "3")
    page.click("#queue-button")
    page.wait_for_function("() => window.app.execution.log.filter((e) => e.type === 'queued').length === 3")
    queued = [entry["promptId"] for entry in execution_log(page, "queued")]
    assert len(set(queued)) == 3
    wait_for_runs_ended(page, 3, timeout=RUN_TIMEOUT_MS)
    seeds = [server.get(f"/api/history/{prompt_id}")[prompt_id]["prompt"][2][str(ksampler)]["inputs"]["seed"]
             for prompt_id in queued]
    assert seeds == [first_seed, first_seed + 1, first_seed + 2]
    assert page.evaluate("id => window.app.graph.getNodeById(id).widgets.find((w) => w.name === 'seed').value",
                         ksampler) == first_seed + 3


def test_cancel_pending_and_interrupt_running_from_the_panel(page: Page, server: ServerProcess) -> None:
    load_workflow(page, image_chain("SlowPassthrough", [slow_seconds()]), "slow")
    page.evaluate("() => document.getElementById('queue-panel').classList.remove('hidden')")
    page.fill("#batch-count", "2")
    page.click("#queue-button")
    page.wait_for_function("() => window.app.execution.log.filter((e) => e.type === 'queued').length === 2")
    running_id, pending_id = (entry["promptId"] for entry in execution_log(page, "queued"))

    pending = page.locator(f'#queue-list .queue-item.pending[data-prompt-id="{pending_id}"]')
    running = page.locator(f'#queue-list .queue-item.running[data-prompt-id="{running_id}"]')
    pending.wait_for()
    running.wait_for()
    page.wait_for_function(_OUTLINED, arg=2)  # the slow node is running

    pending.locator(".queue-cancel").click()
    pending.wait_for(state="detached")
    assert server.get("/api/queue")["queue_pending"] == []
    assert server.get(f"/api/jobs/{pending_id}")["status"] == "cancelled"

    running.locator(".queue-cancel").click()
    wait_for_runs_ended(page, 1, timeout=RUN_TIMEOUT_MS)
    assert execution_log(page, "execution_interrupted")[-1]["promptId"] == running_id
    assert not page.evaluate(_OUTLINED, 2)
    page.locator(".toast", has_text="interrupted").wait_for()
    running.wait_for(state="detached")
    page.locator(f'#history-list .history-item.status-interrupted[data-prompt-id="{running_id}"]').wait_for()


def test_interrupt_button_stops_the_running_prompt(page: Page) -> None:
    load_workflow(page, image_chain("SlowPassthrough", [slow_seconds()]), "slow")
    page.click("#queue-button")
    page.wait_for_function(_OUTLINED, arg=2)
    page.wait_for_function("() => window.app.execution.log.some((e) => e.type === 'progress' && e.node === '2')")
    page.click("#interrupt-button")
    wait_for_runs_ended(page, 1, timeout=RUN_TIMEOUT_MS)
    assert execution_log(page, "execution_interrupted")
    assert not execution_log(page, "execution_success")


def test_history_panel_thumbnails_reopen_and_delete(page: Page, server: ServerProcess) -> None:
    ksampler = node_of_type(page, "KSampler")
    set_widget(page, ksampler, "seed", unique_seed())
    page.evaluate("() => document.getElementById('queue-panel').classList.remove('hidden')")
    queue_and_wait(page, 0)
    prompt_id = execution_log(page, "queued")[-1]["promptId"]

    item = page.locator(f'#history-list .history-item.status-success[data-prompt-id="{prompt_id}"]')
    item.wait_for()
    assert page.locator("#history-list .history-item").first.get_attribute("data-prompt-id") == prompt_id
    thumbnail = item.locator("img.history-thumbnail").first
    thumbnail.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumbnail.element_handle())
    shown = thumbnail.bounding_box()
    assert shown and shown["width"] <= 64 and shown["height"] <= 64

    # Clicking the entry puts that prompt's workflow back on the canvas.
    page.evaluate("id => window.app.graph.remove(window.app.graph.getNodeById(id))", ksampler)
    assert page.evaluate("() => window.app.graph.nodes.length") == 6
    item.click()
    page.wait_for_function("() => window.app.graph.nodes.length === 7")
    assert page.evaluate("id => window.app.graph.getNodeById(id)?.type", ksampler) == "KSampler"

    item.locator(".history-delete").click()
    item.wait_for(state="detached")
    assert prompt_id not in server.get("/api/history")


def test_ctrl_enter_queues_but_not_while_typing(page: Page) -> None:
    ksampler = node_of_type(page, "KSampler")
    set_widget(page, ksampler, "seed", unique_seed())
    page.focus("#batch-count")
    page.keyboard.press("Control+Enter")
    page.locator("#graph-canvas").focus()
    page.keyboard.press("Control+Enter")
    wait_for_runs_ended(page, 1, timeout=RUN_TIMEOUT_MS)
    assert len(execution_log(page, "queued")) == 1


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ServerProcess]:
    (tmp_path / "input").mkdir()
    shutil.copy(REPO / "input" / "example.png", tmp_path / "input" / "example.png")
    process = ServerProcess(tmp_path, extra_args=["--models-dir", str(REPO / "models")]).start()
    yield process
    process.stop()


def test_page_reconnects_after_the_server_restarts(browser: Browser, own_server: ServerProcess) -> None:
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1, bypass_csp=True)
    try:
        page = context.new_page()
        errors = PageErrors(page)
        page.goto(own_server.url + "/")
        page.wait_for_function("window.app && window.app.ready === true", timeout=30_000)
        connection = page.locator("#connection")
        page.wait_for_function("() => document.getElementById('connection').dataset.state === 'connected'")

        own_server.kill()
        page.wait_for_function("() => ['reconnecting', 'disconnected'].includes("
                               "document.getElementById('connection').dataset.state)")
        assert "connected" not in (connection.get_attribute("class") or "").split()

        restarted = ServerProcess(own_server.workdir, port=own_server.port,
                                  extra_args=["--models-dir", str(REPO / "models")]).start()
        own_server.process = restarted.process  # the fixture stops whichever runs now
        page.wait_for_function("() => document.getElementById('connection').dataset.state === 'connected'",
                               timeout=30_000)
        assert connection.inner_text() == "connected"
        page.locator(".toast", has_text="Reconnected").wait_for()

        ksampler = node_of_type(page, "KSampler")
        save = node_of_type(page, "SaveImage")
        set_widget(page, ksampler, "seed", unique_seed())
        page.click("#queue-button")
        page.wait_for_function(_OUTPUT_LOADED, arg=save, timeout=RUN_TIMEOUT_MS)
        assert execution_log(page, "execution_success")
        # The only console errors allowed are connections refused while the server was down, or reset
        # when it was killed mid-request.
        expected = ("ERR_CONNECTION_REFUSED", "ERR_CONNECTION_RESET", "WebSocket connection")
        unexpected = [m for m in errors.take() if not any(text in m for text in expected)]
        assert not unexpected, unexpected
    finally:
        context.close()
