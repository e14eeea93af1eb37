"""Canvas frame times on large workflows, in headless chromium against a real Flowmill server.

For each size, a chain workflow of real node types (image nodes with their widgets, one link into each
node) is loaded through the app's own loader; the load time is measured in the page, then the view is
panned every animation frame for a few seconds at full detail (zoom 1) and zoomed out (zoom 0.4, where
litegraph drops detail) and the frame intervals are recorded. Headless chromium renders the 2D canvas
in software, so absolute figures are pessimistic; compare sizes within one run.

With `--screenshots DIR` it also writes the README's pictures of the canvas: the default workflow after a
run (output image on SaveImage), the node search box, and the 500-node workflow zoomed out.

Run: `python benchmarks/canvas.py [--sizes 500 2000] [--seconds 3] [--screenshots DIR]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.convert import widget_defaults  # noqa: E402
from tests.api.server_process import ServerProcess  # noqa: E402
from tests.browser.canvas_bridge import empty_canvas_xy  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, VIEWPORT  # noqa: E402

# A chain cycles through these after one EmptyImage; each takes the previous node's IMAGE.
CHAIN_TYPES = ("ImageScale", "ImageBlend", "ImageInvert", "ImageScaleBy", "ImageCrop")
COLUMNS = 25
SPACING = (360, 260)

_PAN = """async ([seconds, scale]) => {
  const {canvas} = window.app;
  canvas.ds.scale = scale; canvas.ds.offset[0] = 0; canvas.ds.offset[1] = 0; canvas.setDirty(true, true);
  return await new Promise((resolve) => {
    const intervals = []; let last = performance.now(); const end = last + seconds * 1000;
    const frame = (now) => {
      intervals.push(now - last); last = now;
      canvas.ds.offset[0] -= 6 / scale; canvas.ds.offset[1] -= 2 / scale; canvas.setDirty(true, true);
      if (now < end) requestAnimationFrame(frame); else resolve(intervals.slice(1));
    };
    requestAnimationFrame(frame);
  });
}"""

_LOAD = """(workflow) => { const started = performance.now();
  window.app.workflow.load(workflow, {name: `${workflow.nodes.length} nodes`});
  window.app.canvas.draw(true, true);
  return performance.now() - started; }"""


def chain_workflow(object_info: dict[str, Any], count: int) -> dict[str, Any]:
    """A UI-format (v0.4) workflow of `count` nodes in a grid, each fed by the one before."""
    nodes: list[dict[str, Any]] = []
    links: list[list[Any]] = []
    for index in range(count):
        node_type = "EmptyImage" if index == 0 else CHAIN_TYPES[(index - 1) % len(CHAIN_TYPES)]
        spec = object_info[node_type]
        image_inputs = [name for name, entry in spec["input"]["required"].items() if entry[0] == "IMAGE"]
        row, column = divmod(index, COLUMNS)
        node = {"id": index + 1, "type": node_type, "pos": [column * SPACING[0], row * SPACING[1]],
                "size": [320, 200], "flags": {}, "order": index, "mode": 0, "properties": {},
                "inputs": [{"name": name, "type": "IMAGE", "link": None} for name in image_inputs],
                "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [], "slot_index": 0}],
                "widgets_values": widget_defaults(spec)}
        for slot in range(len(image_inputs)):
            link_id = len(links) + 1
            links.append([link_id, index, 0, index + 1, slot, "IMAGE"])
            node["inputs"][slot]["link"] = link_id
            nodes[-1]["outputs"][0]["links"].append(link_id)
        nodes.append(node)
    return {"last_node_id": count, "last_link_id": len(links), "nodes": nodes, "links": links, "groups": [],
            "config": {}, "extra": {"ds": {"scale": 1, "offset": [0, 0]}}, "version": 0.4}


def frame_summary(intervals: list[float]) -> dict[str, float]:
    ordered = sorted(intervals)
    median = statistics.median(ordered)
    return {"frames": len(ordered), "median_ms": median, "p95_ms": ordered[int(0.95 * (len(ordered) - 1))],
            "max_ms": ordered[-1], "fps": 1000 / median if median else float("inf")}


def measure(page: Any, workflow: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Load time and pan frame times at zoom 1 and 0.4 for one workflow on an opened app page."""
    load_ms = page.evaluate(_LOAD, workflow)
    return {"nodes": len(workflow["nodes"]), "load_ms": load_ms,
            "zoom_1": frame_summary(page.evaluate(_PAN, [seconds, 1.0])),
            "zoom_0.4": frame_summary(page.evaluate(_PAN, [seconds, 0.4]))}


def format_row(result: dict[str, Any]) -> str:
    parts = [f"{result['nodes']:>5} nodes  load {result['load_ms']:7.1f} ms"]
    for zoom in ("zoom_1", "zoom_0.4"):
        s = result[zoom]
        parts.append(f"{zoom}: median {s['median_ms']:5.1f} ms ({s['fps']:4.1f} fps), p95 {s['p95_ms']:5.1f}, "
                     f"max {s['max_ms']:6.1f} over {s['frames']} frames")
    return "  |  ".join(parts)


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--screenshots", type=Path, default=None, help="folder for the README's canvas pictures")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as workdir:
        server = ServerProcess(Path(workdir), extra_args=["--models-dir", str(REPO / "models")]).start()
        try:
            object_info = server.get("/api/object_info")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1, bypass_csp=True)
                page.goto(server.url + "/")
                page.wait_for_function("window.app && window.app.ready === true", timeout=30_000)
                print(f"chromium {browser.version}, viewport {VIEWPORT['width']}x{VIEWPORT['height']}, "
                      f"{args.seconds:g} s of panning per zoom level")
                if args.screenshots:
                    take_screenshots(page, args.screenshots, object_info)
                for size in args.sizes:
                    print(format_row(measure(page, chain_workflow(object_info, size), args.seconds)), flush=True)
                browser.close()
        finally:
            server.stop()
    return 0


def take_screenshots(page: Any, folder: Path, object_info: dict[str, Any]) -> None:
    """The README's pictures: a finished run, the search box, and a large graph zoomed out."""
    folder.mkdir(parents=True, exist_ok=True)
    page.click("#queue-button")
    page.wait_for_function("""() => window.app.graph.nodes.some((n) => n.type === 'SaveImage'
        && n.imgs && n.imgs[0] && n.imgs[0].complete && n.imgs[0].naturalWidth > 0)""", timeout=60_000)
    page.wait_for_timeout(300)  # let the last frame draw
    page.screenshot(path=str(folder / "canvas-default-workflow.png"))
    page.keyboard.press("Escape")
    page.mouse.dblclick(*empty_canvas_xy(page))
    page.locator(".litesearchbox input.value").fill("sampler")
    page.wait_for_timeout(200)
    page.screenshot(path=str(folder / "canvas-search.png"))
    page.keyboard.press("Escape")
    page.evaluate(_LOAD, chain_workflow(object_info, 500))
    page.evaluate("() => { const {canvas} = window.app; canvas.ds.scale = 0.35; canvas.ds.offset[0] = 40;"
                  " canvas.ds.offset[1] = 40; canvas.setDirty(true, true); }")
    page.wait_for_timeout(300)
    page.screenshot(path=str(folder / "canvas-500-nodes.png"))
    print(f"screenshots written to {folder}")


if __name__ == "__main__":
    raise SystemExit(main())
