"""The VAE wrapper: shapes, value range, normalisation, ComfyUI's crop, clear errors."""

from __future__ import annotations

import pytest
import torch

from modeling.loading import load_vae
from modeling.vae import Vae
from tests.unit.modeling.conftest import TinyLayouts


@pytest.fixture(scope="module")
def vae(tiny: TinyLayouts) -> Vae:
    return load_vae(tiny.folder, device="cpu")


def test_encode_and_decode_shapes_and_range(vae: Vae) -> None:
    pixels = torch.rand(2, 32, 48, 3)
    latent = vae.encode(pixels)
    assert latent.shape == (2, 16, 4, 6) and latent.dtype == torch.float32
    images = vae.decode(latent)
    assert images.shape == (2, 32, 48, 3) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1


def test_encode_is_the_normalised_posterior_mean(vae: Vae, tiny: TinyLayouts) -> None:
    pixels = torch.rand(1, 16, 16, 3)
    with torch.no_grad():
        mean = tiny.modules.vae.encode(pixels.permute(0, 3, 1, 2) * 2 - 1).latent_dist.mean
    assert torch.allclose(vae.encode(pixels), (mean - 0.25) * 1.5, atol=1e-6)
    assert torch.equal(vae.encode(pixels), vae.encode(pixels))  # deterministic


def test_decode_undoes_the_normalisation(vae: Vae, tiny: TinyLayouts) -> None:
    latent = torch.randn(1, 16, 2, 2)
    with torch.no_grad():
        raw = tiny.modules.vae.decode(latent / 1.5 + 0.25).sample
    assert torch.allclose(vae.decode(latent), ((raw + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1), atol=1e-6)


def test_sizes_off_the_grid_are_centre_cropped_and_alpha_ignored(vae: Vae) -> None:
    pixels = torch.rand(1, 21, 19, 4)
    assert torch.equal(vae.encode(pixels), vae.encode(pixels[:, 2:18, 1:17, :3]))


def test_wrong_inputs_say_what_was_expected(vae: Vae) -> None:
    with pytest.raises(ValueError, match=r"decodes 16-channel latents .* got shape \(1, 4, 8, 8\)"):
        vae.decode(torch.zeros(1, 4, 8, 8))
    with pytest.raises(ValueError, match=r"expects images \[B, H, W, 3\]"):
        vae.encode(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="at least 8x8 pixels"):
        vae.encode(torch.zeros(1, 4, 4, 3))
