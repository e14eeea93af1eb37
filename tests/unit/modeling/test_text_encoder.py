"""The text encoder: windows of max_length tokens, padding with the end token, any text length."""

from __future__ import annotations

import pytest
import torch

from modeling.loading import load_text_encoder
from modeling.text_encoder import TextEncoder
from tests.fixtures import tiny_models
from tests.unit.modeling.conftest import TinyLayouts

WINDOW = tiny_models.TOKENIZER_MAX_LENGTH


@pytest.fixture(scope="module")
def encoder(tiny: TinyLayouts) -> TextEncoder:
    return load_text_encoder(tiny.folder, device="cpu")


def test_short_text_is_one_window_padded_with_the_end_token(encoder: TextEncoder) -> None:
    (window,) = encoder.token_windows("red circle")
    red, circle = tiny_models.VOCAB["red</w>"], tiny_models.VOCAB["circle</w>"]
    assert window == [tiny_models.START_ID, red, circle] + [tiny_models.END_ID] * (WINDOW - 3)
    hidden, pooled = encoder.encode("red circle")
    assert hidden.shape == (1, WINDOW, 64) and pooled.shape == (1, 64)
    assert hidden.dtype == pooled.dtype == torch.float32 and hidden.device.type == "cpu"


def test_empty_text_still_gives_one_window(encoder: TextEncoder) -> None:
    assert encoder.token_windows("") == [[tiny_models.START_ID] + [tiny_models.END_ID] * (WINDOW - 1)]


def test_long_text_is_split_into_windows_and_nothing_is_lost(encoder: TextEncoder) -> None:
    text = "red " * 30  # 30 tokens: windows of 14, 14 and 2
    windows = encoder.token_windows(text)
    assert len(windows) == 3 and all(len(window) == WINDOW for window in windows)
    assert all(window[0] == tiny_models.START_ID for window in windows)
    inner = [token for window in windows for token in window[1:-1] if token != tiny_models.END_ID]
    assert inner == [tiny_models.VOCAB["red</w>"]] * 30
    hidden, pooled = encoder.encode(text)
    assert hidden.shape == (1, 3 * WINDOW, 64)
    with torch.no_grad():  # each window is encoded on its own; pooled comes from the first
        for index, window in enumerate(windows):
            alone = encoder.module(input_ids=torch.tensor([window]))
            assert torch.allclose(hidden[0, index * WINDOW:(index + 1) * WINDOW], alone.last_hidden_state[0], atol=1e-6)
            if index == 0:
                assert torch.allclose(pooled, alone.pooler_output, atol=1e-6)


def test_pooled_output_reads_the_first_end_token(encoder: TextEncoder) -> None:
    (window,) = encoder.token_windows("red")
    with torch.no_grad():
        output = encoder.module(input_ids=torch.tensor([window]))
    # transformers pools at the first end token: position 2 ("<start> red <end>").
    assert torch.allclose(output.pooler_output[0], output.last_hidden_state[0, 2])


def test_conditioning_is_comfyui_shaped(encoder: TextEncoder) -> None:
    ((hidden, extras),) = encoder.conditioning("blue circle")
    expected_hidden, expected_pooled = encoder.encode("blue circle")
    assert torch.equal(hidden, expected_hidden) and torch.equal(extras["pooled_output"], expected_pooled)
    assert set(extras) == {"pooled_output"}


def test_non_text_is_refused(encoder: TextEncoder) -> None:
    with pytest.raises(ValueError, match="text must be a string, got int"):
        encoder.encode(3)  # type: ignore[arg-type]
