"""engine/media.py: safe decoding, tensor conversion, atomic writes, PNG text and output names."""

from __future__ import annotations

import io
import os
import struct
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine import media
from engine.media import (
    ImageDecodeError,
    atomic_write_bytes,
    encode_png,
    next_output_name,
    open_image_safely,
    pil_to_tensor,
    read_png_text,
    remove_stale_temp_files,
    tensor_to_pil,
)
from engine.paths import UnsafePathError


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims width x height; decoding would need width*height pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# open_image_safely


def test_decompression_bomb_is_refused_fast() -> None:
    bomb = png_header_only(50_000, 50_000)
    assert len(bomb) < 200
    started = time.perf_counter()
    with pytest.raises(ImageDecodeError) as caught:
        open_image_safely(bomb, name="bomb.png")
    assert time.perf_counter() - started < 1.0
    assert str(caught.value) == (
        "bomb.png: image has 2,500,000,000 pixels, more than the limit of 89,478,485 "
        "(refused as a possible decompression bomb)"
    )


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow still warns; we raise
def test_size_between_warning_and_error_threshold_is_an_error(tmp_path: Path) -> None:
    # 10,000 x 10,000 lies above Pillow's warning threshold but below its 2x error threshold.
    path = tmp_path / "big.png"
    path.write_bytes(png_header_only(10_000, 10_000))
    filters_before = list(warnings.filters)
    with pytest.raises(ImageDecodeError, match=r"100,000,000 pixels.*limit of 89,478,485"):
        open_image_safely(path)
    assert warnings.filters == filters_before
    assert Image.MAX_IMAGE_PIXELS == media.DEFAULT_MAX_PIXELS


def test_max_pixels_tightens_the_limit() -> None:
    data = encoded(Image.new("RGB", (40, 30)), "PNG")
    with pytest.raises(ImageDecodeError, match=r"40x30 = 1,200 pixels, more than the limit of 1,000"):
        open_image_safely(data, max_pixels=1000)
    with open_image_safely(data, max_pixels=1200) as image:
        assert image.size == (40, 30)


def test_limit_holds_even_if_a_plugin_disables_pillows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        open_image_safely(png_header_only(10_000, 10_000))


def test_tiff_is_refused_with_allowed_formats_named() -> None:
    data = encoded(Image.new("RGB", (4, 4)), "TIFF")
    with pytest.raises(ImageDecodeError, match=r"x\.tiff: .*allowed: PNG, JPEG, WEBP, GIF, BMP"):
        open_image_safely(data, name="x.tiff")


def test_unknown_bytes_are_refused() -> None:
    with pytest.raises(ImageDecodeError, match="supported format"):
        open_image_safely(b"this is not an image at all")


def test_truncated_png_is_an_error_not_a_partial_image(tmp_path: Path) -> None:
    data = encoded(Image.effect_noise((64, 64), 50).convert("RGB"), "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match="cut.png"):
        open_image_safely(path)


def test_missing_file_is_a_decode_error_without_the_real_path(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="^absent.png: cannot be read: No such file") as caught:
        open_image_safely(tmp_path / "absent.png", name="absent.png")
    assert str(tmp_path) not in str(caught.value)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP"])
def test_allowed_formats_open(fmt: str) -> None:
    with open_image_safely(encoded(Image.new("RGB", (6, 5), (255, 0, 0)), fmt)) as image:
        assert image.size == (6, 5)
        assert image.format == fmt


# ---------------------------------------------------------------------------------------------
# pil_to_tensor / tensor_to_pil


def test_rgb_image_gives_zero_mask_of_image_size() -> None:
    pixels, mask = pil_to_tensor(Image.new("RGB", (5, 3), (255, 128, 0)))
    assert pixels.shape == (1, 3, 5, 3) and pixels.dtype == torch.float32
    assert torch.allclose(pixels[0, 0, 0], torch.tensor([1.0, 128 / 255, 0.0]))
    assert mask.shape == (1, 3, 5) and torch.count_nonzero(mask) == 0


def test_alpha_becomes_inverted_mask() -> None:
    rgba = Image.new("RGBA", (2, 1))
    rgba.putpixel((0, 0), (10, 20, 30, 255))
    rgba.putpixel((1, 0), (10, 20, 30, 51))
    _, mask = pil_to_tensor(rgba)
    assert torch.allclose(mask, torch.tensor([[[0.0, 1 - 51 / 255]]]))


def test_palette_transparency_becomes_mask() -> None:
    paletted = Image.new("P", (2, 2), 0)
    paletted.putpalette([0, 0, 0, 255, 255, 255])
    paletted.putpixel((1, 1), 1)
    paletted.info["transparency"] = 1
    _, mask = pil_to_tensor(paletted)
    assert mask[0, 1, 1] == 1.0 and mask[0, 0, 0] == 0.0


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    data = encoded(Image.new("RGB", (8, 4)), "JPEG", exif=exif)
    with open_image_safely(data) as image:
        pixels, mask = pil_to_tensor(image)
    assert pixels.shape == (1, 8, 4, 3) and mask.shape == (1, 8, 4)


def test_animated_gif_gives_a_batch_of_frames() -> None:
    frames = [Image.new("RGB", (4, 4), color) for color in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=10)
    with open_image_safely(data) as image:
        pixels, mask = pil_to_tensor(image)
    assert pixels.shape == (3, 4, 4, 3) and mask.shape == (3, 4, 4)
    assert pixels[1, 0, 0].argmax() == 1 and pixels[2, 0, 0].argmax() == 2


def test_frame_budget_is_enforced() -> None:
    frames = [Image.new("RGB", (4, 4), (i * 40, 0, 0)) for i in range(3)]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=10)
    with open_image_safely(data) as image, pytest.raises(ImageDecodeError, match="^anim.gif: 3 frames of 4x4"):
        pil_to_tensor(image, max_total_pixels=40, name="anim.gif")


def test_sixteen_bit_png_keeps_precision() -> None:
    grey = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16))
    with open_image_safely(encoded(grey, "PNG")) as image:
        pixels, _ = pil_to_tensor(image)
    assert torch.allclose(pixels[0, 0, :, 0], torch.tensor([0.0, 32768 / 65535, 1.0]))


def test_tensor_round_trip_is_exact_for_8_bit_values() -> None:
    values = torch.arange(256, dtype=torch.float32).reshape(1, 16, 16, 1).repeat(1, 1, 1, 3) / 255
    pixels, _ = pil_to_tensor(tensor_to_pil(values))
    assert torch.equal(pixels, values)


def test_tensor_to_pil_modes_and_errors() -> None:
    assert tensor_to_pil(torch.zeros(2, 3, 4)).mode == "RGBA"
    assert tensor_to_pil(torch.zeros(1, 2, 3, 1)).size == (3, 2)
    with pytest.raises(ValueError, match="batch of one"):
        tensor_to_pil(torch.zeros(2, 2, 2, 3))
    with pytest.raises(ValueError, match="C in 1..4"):
        tensor_to_pil(torch.zeros(2, 2, 5))


# ---------------------------------------------------------------------------------------------
# Atomic writes


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    atomic_write_bytes(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert [path.name for path in tmp_path.iterdir()] == ["out.png"]


def test_failed_replace_keeps_original_and_removes_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"original")

    def refuse(source: object, destination: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write_bytes(target, b"x" * 100_000)
    assert target.read_bytes() == b"original"
    assert [path.name for path in tmp_path.iterdir()] == ["out.png"]


def test_failed_write_never_creates_the_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_sync(descriptor: int) -> None:
        raise OSError("fsync failed")

    monkeypatch.setattr(os, "fsync", no_sync)
    with pytest.raises(OSError, match="fsync failed"):
        atomic_write_bytes(tmp_path / "new.png", b"data")
    assert list(tmp_path.iterdir()) == []


def test_remove_stale_temp_files_only_removes_ours(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    stale = media.temp_path_for(tmp_path / "sub" / "a.png")
    stale.write_bytes(b"partial")
    user_file = tmp_path / "notes.tmp"
    user_file.write_bytes(b"keep me")
    assert remove_stale_temp_files(tmp_path) == [stale]
    assert not stale.exists() and user_file.exists()
    assert remove_stale_temp_files(tmp_path / "missing") == []


# ---------------------------------------------------------------------------------------------
# PNG text


def test_png_text_round_trip(tmp_path: Path) -> None:
    chunks = {"prompt": '{"1": {"class_type": "X"}}', "workflow": '{"nodes": []}', "note": "café ✓"}
    data = encode_png(Image.new("RGB", (3, 3)), chunks)
    assert b"tEXtprompt\x00" in data  # plain tEXt, as ComfyUI writes
    path = tmp_path / "meta.png"
    path.write_bytes(data)
    assert read_png_text(path) == chunks
    assert read_png_text(data) == chunks


def test_png_text_rejects_invalid_keys() -> None:
    with pytest.raises(ValueError, match="not a valid keyword"):
        encode_png(Image.new("RGB", (1, 1)), {"k" * 80: "v"})


def test_read_png_text_of_jpeg_is_empty() -> None:
    assert read_png_text(encoded(Image.new("RGB", (2, 2)), "JPEG")) == {}


# ---------------------------------------------------------------------------------------------
# Output names


def test_counter_starts_at_one_and_continues_after_highest(tmp_path: Path) -> None:
    assert next_output_name(tmp_path, "ComfyUI") == ("", "ComfyUI_00001_.png")
    for name in ("ComfyUI_00001_.png", "ComfyUI_00007_.webp", "Other_00050_.png", "ComfyUI_x_.png"):
        (tmp_path / name).write_bytes(b"")
    assert next_output_name(tmp_path, "ComfyUI") == ("", "ComfyUI_00008_.png")


def test_prefix_with_subfolder(tmp_path: Path) -> None:
    (tmp_path / "renders").mkdir()
    (tmp_path / "renders" / "cat_00003_.png").write_bytes(b"")
    assert next_output_name(tmp_path, "renders/cat", "webp") == ("renders", "cat_00004_.webp")
    assert next_output_name(tmp_path, "renders\\deep/dog") == ("renders/deep", "dog_00001_.png")


@pytest.mark.parametrize("prefix", ["../escape", "renders/../../escape", "/etc/passwd", "C:/x", "a\x00b"])
def test_prefix_cannot_leave_the_root(tmp_path: Path, prefix: str) -> None:
    with pytest.raises(UnsafePathError, match="outside the output folder"):
        next_output_name(tmp_path / "output", prefix)


@pytest.mark.parametrize("prefix", ["", ".", "renders/.."])
def test_prefix_without_file_name_is_rejected(tmp_path: Path, prefix: str) -> None:
    with pytest.raises(ValueError, match="does not end in a file name"):
        next_output_name(tmp_path, prefix)


def test_size_variables_are_substituted(tmp_path: Path) -> None:
    assert next_output_name(tmp_path, "img_%width%x%height%", width=64, height=32) == ("", "img_64x32_00001_.png")
