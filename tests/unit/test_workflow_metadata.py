"""Workflows embedded in WebP images and WebM/MP4 videos (engine/workflow_metadata.py).

Every file here is written the way ComfyUI writes it: WebP through Pillow with EXIF tags
"prompt:<json>" in 0x0110 and "workflow:<json>" in 0x010F (further extra_pnginfo keys from
0x010E down), still and animated as SaveAnimatedWEBP saves; videos through PyAV with
container tags "prompt" and "workflow" (MP4 with movflags=use_metadata_tags). The reader
must find them without decoding frames, bound what it reads, and name the file when it
cannot.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from engine.headless import WorkflowError, read_workflow_file
from engine.workflow_metadata import (
    MAX_EXIF_BYTES,
    MetadataError,
    media_kind,
    read_embedded_metadata,
)

CANVAS = {"last_node_id": 1, "last_link_id": 0, "version": 0.4, "links": [],
          "nodes": [{"id": 1, "type": "EmptyImage", "inputs": [], "outputs": [], "widgets_values": [8, 8, 1, 0]}]}
PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}


def comfy_exif(image: Image.Image, prompt: Any, extra_pnginfo: dict[str, Any]) -> Image.Exif:
    """EXIF as ComfyUI's WebP savers fill it."""
    exif = image.getexif()
    if prompt is not None:
        exif[0x0110] = f"prompt:{json.dumps(prompt)}"
    tag = 0x010F
    for key, value in extra_pnginfo.items():
        exif[tag] = f"{key}:{json.dumps(value)}"
        tag -= 1
    return exif


def write_webp(path: Path, *, frames: int = 1, prompt: Any = PROMPT,
               extra: dict[str, Any] | None = None) -> Path:
    images = [Image.new("RGB", (16, 16), (40 * index, 0, 255 - 40 * index)) for index in range(frames)]
    exif = comfy_exif(images[0], prompt, {"workflow": CANVAS} if extra is None else extra)
    if frames == 1:
        images[0].save(path, format="WEBP", exif=exif, lossless=True)
    else:  # SaveAnimatedWEBP
        images[0].save(path, format="WEBP", save_all=True, duration=125, append_images=images[1:], exif=exif,
                       lossless=False, quality=80, method=4)
    return path


def write_video(path: Path, container_format: str, codec: str, metadata: dict[str, str]) -> Path:
    """A three-frame video whose container carries `metadata`, as ComfyUI's save_to writes it."""
    import av

    options = {"movflags": "use_metadata_tags"} if container_format == "mp4" else {}
    with av.open(str(path), mode="w", format=container_format, options=options) as output:
        for key, value in metadata.items():
            output.metadata[key] = value
        stream = output.add_stream(codec, rate=8)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        for index in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), 60 * index, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path


def comfy_video_metadata() -> dict[str, str]:
    return {"prompt": json.dumps(PROMPT), "workflow": json.dumps(CANVAS)}


# ---------------------------------------------------------------- WebP


def test_still_webp_carries_prompt_and_workflow(tmp_path: Path) -> None:
    path = write_webp(tmp_path / "still.webp")
    assert media_kind(path) == "webp"
    texts = read_embedded_metadata(path)
    assert json.loads(texts["workflow"]) == CANVAS and json.loads(texts["prompt"]) == PROMPT


def test_animated_webp_is_read_without_decoding_its_frames(tmp_path: Path) -> None:
    path = write_webp(tmp_path / "animated.webp", frames=6)
    with Image.open(path) as image:
        assert getattr(image, "n_frames", 1) == 6
    texts = read_embedded_metadata(path)
    assert json.loads(texts["workflow"]) == CANVAS and json.loads(texts["prompt"]) == PROMPT


def test_webp_suffix_does_not_matter_and_other_extra_keys_are_ignored(tmp_path: Path) -> None:
    path = write_webp(tmp_path / "renamed.bin", extra={"workflow": CANVAS, "notes": {"a": 1}})
    assert set(read_embedded_metadata(path)) == {"workflow", "prompt"}


def test_webp_without_exif_has_no_metadata(tmp_path: Path) -> None:
    path = tmp_path / "plain.webp"
    Image.new("RGB", (8, 8)).save(path, format="WEBP")
    assert read_embedded_metadata(path) == {}


def _riff(chunks: list[tuple[bytes, bytes, int | None]]) -> bytes:
    body = b"WEBP"
    for fourcc, data, declared in chunks:
        length = len(data) if declared is None else declared
        body += fourcc + struct.pack("<I", length) + data + (b"\0" if len(data) % 2 else b"")
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_oversized_exif_chunk_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.webp"
    path.write_bytes(_riff([(b"VP8X", b"\0" * 10, None), (b"EXIF", b"II*\0", MAX_EXIF_BYTES + 1)]))
    with pytest.raises(MetadataError, match=r"huge.webp: the WebP's EXIF chunk is .* more than the limit"):
        read_embedded_metadata(path)


def test_truncated_and_damaged_exif_name_the_file(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.webp"
    truncated.write_bytes(_riff([(b"EXIF", b"II*\0", 5000)]))
    with pytest.raises(MetadataError, match="truncated.webp: the WebP's EXIF chunk is truncated"):
        read_embedded_metadata(truncated)
    damaged = tmp_path / "damaged.webp"
    damaged.write_bytes(_riff([(b"EXIF", b"not a tiff header", None)]))
    with pytest.raises(MetadataError, match="damaged.webp: the WebP's EXIF data is unreadable"):
        read_embedded_metadata(damaged)


def test_files_that_are_neither_webp_nor_video_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.json"
    path.write_text(json.dumps(CANVAS))
    assert media_kind(path) is None
    with pytest.raises(MetadataError, match="not a WebP image or a WebM/MP4 video"):
        read_embedded_metadata(path)


# ---------------------------------------------------------------- WebM / MP4


@pytest.mark.parametrize(("name", "container_format", "codec"), [
    ("clip.webm", "webm", "libvpx-vp9"),  # SaveWEBM; Matroska upper-cases the tag names
    ("clip.mp4", "mp4", "libx264"),  # SaveVideo, with movflags=use_metadata_tags
])
def test_video_container_tags_carry_prompt_and_workflow(tmp_path: Path, name: str, container_format: str,
                                                        codec: str) -> None:
    path = write_video(tmp_path / name, container_format, codec, comfy_video_metadata())
    assert media_kind(path) == "video"
    texts = read_embedded_metadata(path)
    assert json.loads(texts["workflow"]) == CANVAS and json.loads(texts["prompt"]) == PROMPT


def test_video_helper_suite_comment_is_read_too(tmp_path: Path) -> None:
    comment = json.dumps({"prompt": PROMPT, "workflow": CANVAS})
    path = write_video(tmp_path / "vhs.mp4", "mp4", "libx264", {"comment": comment})
    texts = read_embedded_metadata(path)
    assert json.loads(texts["workflow"]) == CANVAS and json.loads(texts["prompt"]) == PROMPT


def test_video_without_workflow_tags_has_no_metadata(tmp_path: Path) -> None:
    path = write_video(tmp_path / "bare.webm", "webm", "libvpx-vp9", {"title": "a clip"})
    assert read_embedded_metadata(path) == {}


def test_damaged_video_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"\0\0\0\x18ftypisom" + b"\x07" * 200)
    with pytest.raises(MetadataError, match="broken.mp4: not a readable video file"):
        read_embedded_metadata(path)


# ---------------------------------------------------------------- as workflow files


def test_workflow_file_from_webp_keeps_the_prompt_as_the_canvas_fallback(tmp_path: Path) -> None:
    read = read_workflow_file(write_webp(tmp_path / "still.webp"))
    assert read.workflow == CANVAS and read.extra_pnginfo == {"workflow": CANVAS}
    assert read.embedded_prompt == PROMPT


def test_workflow_file_from_a_video_with_only_a_prompt(tmp_path: Path) -> None:
    path = write_video(tmp_path / "prompt_only.webm", "webm", "libvpx-vp9", {"prompt": json.dumps(PROMPT)})
    read = read_workflow_file(path)
    assert read.workflow == PROMPT and read.extra_pnginfo is None and read.embedded_prompt is None


def test_workflow_file_errors_name_the_file_and_the_problem(tmp_path: Path) -> None:
    empty = tmp_path / "empty.webp"
    Image.new("RGB", (8, 8)).save(empty, format="WEBP")
    with pytest.raises(WorkflowError, match="empty.webp: the WebP image carries neither a 'workflow' nor a 'prompt'"):
        read_workflow_file(empty)
    bad = write_webp(tmp_path / "bad.webp", prompt=None, extra={"workflow": "x"})
    with pytest.raises(WorkflowError, match="bad.webp .*not a workflow"):
        read_workflow_file(bad)


def test_png_is_recognised_by_its_bytes_whatever_its_suffix(tmp_path: Path) -> None:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("workflow", json.dumps(CANVAS))
    info.add_text("prompt", json.dumps(PROMPT))
    path = tmp_path / "downloaded.json"
    Image.new("RGB", (8, 8)).save(path, format="PNG", pnginfo=info)
    assert media_kind(path) == "png"
    read = read_workflow_file(path)
    assert read.workflow == CANVAS and read.embedded_prompt == PROMPT
