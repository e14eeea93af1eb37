"""Latent previews: the least-squares fit recovers a known map; files round-trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from modeling.errors import ModelFileError
from modeling.latent_preview import LatentPreview


def test_fit_recovers_a_known_linear_map() -> None:
    generator = torch.Generator().manual_seed(0)
    factors, bias = torch.randn(16, 3, generator=generator) * 0.1, torch.tensor([0.4, 0.5, 0.6])
    latents = torch.randn(8, 16, 4, 4, generator=generator)
    small = torch.einsum("nchw,ck->nkhw", latents, factors) + bias[None, :, None, None]
    images = F.interpolate(small, scale_factor=8, mode="nearest").permute(0, 2, 3, 1)  # [N, 32, 32, 3]
    fitted = LatentPreview.fit(latents, images)
    assert torch.allclose(fitted.factors, factors, atol=1e-5) and torch.allclose(fitted.bias, bias, atol=1e-5)


def test_to_rgb_is_uint8_of_the_first_item() -> None:
    preview = LatentPreview(torch.eye(3), torch.zeros(3))
    latent = torch.tensor([[[0.0, 0.5]], [[1.0, 2.0]], [[-1.0, 0.25]]])  # [3, 1, 2]
    rgb = preview.to_rgb(torch.stack([latent, latent + 5]))
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 2, 3)
    assert rgb.tolist() == [[[0, 255, 0], [128, 255, 64]]]
    with pytest.raises(ValueError, match="expected a 3-channel latent"):
        preview.to_rgb(torch.zeros(4, 2, 2))


def test_generic_preview_handles_any_channel_count() -> None:
    for channels in (4, 16, 48):
        assert LatentPreview.generic(channels).to_rgb(torch.zeros(channels, 2, 2)).tolist() == [[[128] * 3] * 2] * 2


def test_json_round_trip_and_bad_files(tmp_path: Path) -> None:
    preview = LatentPreview(torch.randn(16, 3), torch.randn(3))
    preview.save(tmp_path / "latent_preview.json")
    loaded = LatentPreview.load(tmp_path / "latent_preview.json")
    assert torch.equal(loaded.factors, preview.factors) and torch.equal(loaded.bias, preview.bias)
    (tmp_path / "bad.json").write_text('{"factors": [[1, 2]], "bias": [0, 0, 0]}')
    with pytest.raises(ModelFileError, match="bad.json: not a valid latent preview file"):
        LatentPreview.load(tmp_path / "bad.json")
