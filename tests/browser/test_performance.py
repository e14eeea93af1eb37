"""A 500-node workflow loads into the canvas and pans; the frame times are printed, not asserted
(software rendering on a shared CPU is too noisy for a threshold). `benchmarks/canvas.py` measures
the same with more sizes."""

from __future__ import annotations

from playwright.sync_api import Page

from benchmarks.canvas import chain_workflow, format_row, measure
from tests.api.server_process import ServerProcess


def test_a_500_node_workflow_loads_and_pans(page: Page, server: ServerProcess) -> None:
    workflow = chain_workflow(server.get("/api/object_info"), 500)
    result = measure(page, workflow, seconds=2.0)
    print("\n" + format_row(result))
    counts = page.evaluate("() => [window.app.graph.nodes.length, window.app.graph.links.size ?? "
                           "Object.keys(window.app.graph.links).length]")
    assert counts == [500, len(workflow["links"])]  # one link into each chain node, two into each ImageBlend
    assert result["zoom_1"]["frames"] > 0 and result["zoom_0.4"]["frames"] > 0
    unknown = page.evaluate("() => window.app.graph.nodes.filter((n) => !window.app.nodeDefs[n.type]).length")
    assert unknown == 0
