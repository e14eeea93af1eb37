"""WebP images and WebM / MP4 videos that carry a workflow open it when dropped on the canvas
(issue 13, §2 "Read workflow metadata from WebP (still and animated) and from WebM/MP4").

The files are made here the way ComfyUI writes them: Pillow WebP with EXIF text entries
"workflow:<json>" in tag 0x010F (Make) and "prompt:<json>" in 0x0110 (Model), as ComfyUI's
SaveAnimatedWEBP does, and PyAV (FFmpeg) containers with "workflow" / "prompt" metadata, MP4 with
`movflags=use_metadata_tags` as ComfyUI's video saving passes. The readers are also run in the page on
damaged and hostile variants: they must neither throw nor read past the bytes they were given.
"""

from __future__ import annotations

import base64
import copy
import io
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page

from tests.browser.canvas_bridge import drop_file, graph_nodes

REPO = Path(__file__).resolve().parents[2]
DEFAULT = json.loads((REPO / "workflows" / "default.json").read_text())
PROMPT_NODE = 2  # CLIPTextEncode: its text tells which file's workflow opened
MAKE, MODEL = 0x010F, 0x0110


def workflow_saying(text: str) -> dict[str, Any]:
    workflow = copy.deepcopy(DEFAULT)
    next(node for node in workflow["nodes"] if node["id"] == PROMPT_NODE)["widgets_values"] = [text]
    return workflow


def api_prompt_saying(text: str) -> dict[str, Any]:
    """A small API prompt (what a file without a canvas workflow still carries)."""
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
            "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": text}}}


def comfy_webp(workflow: dict[str, Any] | None, prompt: dict[str, Any] | None, frames: int = 1) -> bytes:
    """A WebP as ComfyUI's SaveAnimatedWEBP writes it (EXIF "<key>:<json>" entries from 0x010F down)."""
    images = [Image.new("RGB", (32, 32), (40 * index, 90, 200)) for index in range(frames)]
    exif = images[0].getexif()
    if prompt is not None:
        exif[MODEL] = "prompt:" + json.dumps(prompt)
    if workflow is not None:
        exif[MAKE] = "workflow:" + json.dumps(workflow)
    buffer = io.BytesIO()
    extra: dict[str, Any] = {}
    if frames > 1:
        extra = {"save_all": True, "append_images": images[1:], "duration": 100, "loop": 0}
    images[0].save(buffer, "WEBP", exif=exif, lossless=True, **extra)
    return buffer.getvalue()


def video(container: str, codec: str, metadata: dict[str, Any], options: dict[str, str] | None = None) -> bytes:
    """A few frames in a container whose metadata holds each value as JSON text (ComfyUI's layout)."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container, options=options or {}) as output:
        stream = output.add_stream(codec, rate=Fraction(8))
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for key, value in metadata.items():
            output.metadata[key] = value if isinstance(value, str) else json.dumps(value)
        for index in range(4):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), index * 50, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return buffer.getvalue()


def prompt_text(page: Page) -> str:
    node = next(node for node in graph_nodes(page) if node["id"] == PROMPT_NODE)
    return dict(node["widgets"])["text"]


def drop_and_wait(page: Page, name: str, data: bytes, mime: str, text: str) -> None:
    drop_file(page, name, data, mime)
    page.wait_for_function("""t => window.app.graph.nodes.some((n) => n.type === 'CLIPTextEncode'
        && n.widgets?.some((w) => w.name === 'text' && w.value === t))""", arg=text, timeout=15_000)


MP4_TAGS = {"movflags": "use_metadata_tags"}  # what ComfyUI passes, so custom keys are kept


def comfy_metadata(text: str) -> dict[str, Any]:
    return {"prompt": api_prompt_saying("x"), "workflow": workflow_saying(text)}


def twice_encoded(text: str) -> dict[str, Any]:
    return {"workflow": json.dumps(json.dumps(workflow_saying(text)))}


CASES = {
    "comfy_still.webp": (lambda text: comfy_webp(workflow_saying(text), api_prompt_saying("x")), "image/webp"),
    "comfy_animated.webp": (lambda text: comfy_webp(workflow_saying(text), api_prompt_saying("x"), frames=4),
                            "image/webp"),
    "comfy.webm": (lambda text: video("webm", "libvpx-vp9", comfy_metadata(text)), "video/webm"),
    # A live (streamed) WebM: its segment and clusters have unknown sizes.
    "live.webm": (lambda text: video("webm", "libvpx-vp9", comfy_metadata(text), {"live": "1"}), "video/webm"),
    "comfy.mp4": (lambda text: video("mp4", "libx264", comfy_metadata(text), MP4_TAGS), "video/mp4"),
    # A workflow written as a JSON string of its JSON (some writers encode twice).
    "twice_encoded.mp4": (lambda text: video("mp4", "libx264", twice_encoded(text), MP4_TAGS), "video/mp4"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_dropping_media_with_a_workflow_opens_it(page: Page, name: str) -> None:
    make, mime = CASES[name]
    text = f"opened from {name}: a green square on white"
    drop_and_wait(page, name, make(text), mime, text)
    assert sorted(node["type"] for node in graph_nodes(page)) == sorted(node["type"] for node in DEFAULT["nodes"])
    assert prompt_text(page) == text
    assert page.locator("#error-panel").is_hidden()


@pytest.mark.parametrize("name", ["comfy_animated.webp", "comfy.mp4"])
def test_the_open_button_opens_media_too(page: Page, name: str) -> None:
    make, mime = CASES[name]
    text = f"opened with the Open button from {name}"
    page.set_input_files("#workflow-file", files=[{"name": name, "mimeType": mime, "buffer": make(text)}])
    page.wait_for_function("""t => window.app.graph.nodes.some((n) => n.type === 'CLIPTextEncode'
        && n.widgets?.some((w) => w.name === 'text' && w.value === t))""", arg=text, timeout=15_000)
    assert page.locator("#error-panel").is_hidden()


def test_a_webp_with_only_the_api_prompt_opens_it_laid_out(page: Page) -> None:
    drop_file(page, "prompt_only.webp", comfy_webp(None, api_prompt_saying("only-the-prompt")), "image/webp")
    page.wait_for_function("() => window.app.graph.nodes.some((n) => n.type === 'ImageInvert')")
    assert sorted(node["type"] for node in graph_nodes(page)) == ["EmptyImage", "ImageInvert", "SaveImage"]


def test_media_without_a_workflow_is_refused_with_a_message(page: Page) -> None:
    before = graph_nodes(page)
    drop_file(page, "plain.webm", video("webm", "libvpx-vp9", {"title": "no workflow here"}), "video/webm")
    panel = page.locator("#error-panel")
    panel.wait_for(state="visible")
    assert "Cannot open plain.webm" in panel.inner_text() and "carries no workflow" in panel.inner_text()
    assert graph_nodes(page) == before


def test_the_readers_survive_damaged_and_hostile_files(page: Page) -> None:
    """Truncations, flipped bytes and lengths that claim gigabytes: each variant reads (or reads as
    nothing) without an exception; the intact files still give their workflows."""
    samples = {
        "webp": comfy_webp(workflow_saying("w"), None, frames=3),
        "webm": video("webm", "libvpx-vp9", {"workflow": workflow_saying("m")}),
        "mp4": video("mp4", "libx264", {"workflow": workflow_saying("i")}, MP4_TAGS),
    }
    result = page.evaluate("""async (samples) => {
        const { readMediaWorkflow } = await import('/js/media_metadata.js');
        let seed = 7; const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
        const report = { runs: 0, errors: [], intact: {} };
        for (const [kind, b64] of Object.entries(samples)) {
          const base = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          report.intact[kind] = readMediaWorkflow(base)?.workflow?.nodes?.length ?? 0;
          for (let i = 0; i < 400; i++) {
            const bytes = base.slice(0, 16 + Math.floor(random() * (base.length - 15)));
            for (let k = Math.floor(random() * 6); k > 0; k--) {
              bytes[Math.floor(random() * bytes.length)] = random() * 256;
            }
            if (i % 4 === 0) { // a length field claiming ~4 GB somewhere
              const at = Math.floor(random() * (bytes.length - 4));
              bytes.set([0xff, 0xff, 0xff, 0xf0], at);
            }
            try { readMediaWorkflow(bytes); } catch (error) { report.errors.push(`${kind}: ${error}`); }
            report.runs++;
          }
        }
        return report; }""", {kind: base64.b64encode(data).decode() for kind, data in samples.items()})
    assert result["errors"] == [], result["errors"][:5]
    assert result["runs"] == 1200
    assert all(count == len(DEFAULT["nodes"]) for count in result["intact"].values()), result["intact"]
