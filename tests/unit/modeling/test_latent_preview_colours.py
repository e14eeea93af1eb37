"""Latent previews show the colours the image will have: the hidden-layer map and the demo VAE's fitted one.

The demo VAE's shipped map is checked against what the VAE decodes, on every background colour and on a
real generation: a least-squares linear map (what shipped before) previews a white background as pink
([202, 173, 173] against a decoded [243, 242, 243]) and misses decoded images by 37 levels on average.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from modeling.errors import ModelFileError
from modeling.latent_preview import LatentPreview
from modeling.loading import load_checkpoint
from training.evaluate_demo import EvaluationSettings, decode, generate_latents, recommended_cfg
from training.shapes import COLOURS, Scene, mask, render

DEMO = Path(__file__).resolve().parents[3] / "models" / "checkpoints" / "flowmill-shapes-demo"


def test_a_hidden_layer_fits_colours_that_least_squares_cannot() -> None:
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(64, 4, 6, 6, generator=generator)
    # Colour saturates in the latent, as a VAE decoder's does: no linear map follows it.
    small = torch.sigmoid(3 * torch.stack([latents[:, 0], latents[:, 1] * latents[:, 2], latents[:, 3].abs()], 1))
    images = F.interpolate(small, scale_factor=8, mode="nearest").permute(0, 2, 3, 1)

    def error(preview: LatentPreview) -> float:
        return float(np.mean([np.abs(preview.to_rgb(latent) / 255 - small[i].permute(1, 2, 0).numpy()).mean()
                              for i, latent in enumerate(latents)]))

    linear, hidden = LatentPreview.fit(latents, images), LatentPreview.fit(latents, images, hidden_units=32, steps=1500)
    assert hidden.hidden_factors is not None and hidden.channels == 4
    assert error(hidden) < 0.4 * error(linear)
    again = LatentPreview.fit(latents, images, hidden_units=32, steps=1500)
    assert torch.equal(again.hidden_factors, hidden.hidden_factors)  # seeded: a refit is the same file


def test_a_kernel_reads_each_latent_pixel_s_neighbours() -> None:
    # One channel, 3x3 window; unit 0 reads the left neighbour (window index 3), unit 1 the right one (5).
    hidden_factors = torch.zeros(9, 2)
    hidden_factors[3, 0] = hidden_factors[5, 1] = 1.0
    factors = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    preview = LatentPreview(factors, torch.zeros(3), hidden_factors, torch.zeros(2), kernel=3)
    latent = torch.tensor([[[1.0, 2.0, 3.0]]])  # [1, 1, 3]
    silu = F.silu(torch.tensor([1.0, 1.0, 2.0, 2.0, 3.0, 3.0])).mul(255).round().clamp(0, 255).tolist()
    rgb = preview.to_rgb(latent)
    # Edges repeat: the first pixel's left neighbour is itself, the last one's right neighbour too.
    assert rgb[0, :, 0].tolist() == [silu[0], silu[0], silu[2]]
    assert rgb[0, :, 1].tolist() == [silu[2], silu[4], silu[4]]


def test_a_hidden_layer_round_trips_and_bad_shapes_are_refused(tmp_path: Path) -> None:
    preview = LatentPreview(torch.randn(8, 3), torch.randn(3), torch.randn(16 * 9, 8), torch.randn(8), kernel=3)
    preview.save(tmp_path / "latent_preview.json")
    loaded = LatentPreview.load(tmp_path / "latent_preview.json")
    assert loaded.kernel == 3 and loaded.channels == 16
    assert torch.equal(loaded.hidden_factors, preview.hidden_factors) and torch.equal(loaded.factors, preview.factors)
    with pytest.raises(ValueError, match="hidden layer of 8 units over 3x3"):
        LatentPreview(torch.randn(8, 3), torch.randn(3), torch.randn(16 * 9 + 1, 8), torch.randn(8), kernel=3)
    with pytest.raises(ValueError, match="needs both"):
        LatentPreview(torch.randn(8, 3), torch.randn(3), torch.randn(16, 8), None)
    with pytest.raises(ValueError, match="odd number"):
        LatentPreview(torch.randn(8, 3), torch.randn(3), torch.randn(64, 8), torch.randn(8), kernel=2)
    (tmp_path / "bad.json").write_text('{"factors": [[1, 2, 3]], "bias": [0, 0, 0], "hidden": {"factors": [[1]]}}')
    with pytest.raises(ModelFileError, match="bad.json: not a valid latent preview file"):
        LatentPreview.load(tmp_path / "bad.json")


@pytest.fixture(scope="module")
def demo() -> tuple:
    return load_checkpoint(DEMO, device="cpu")


def _on_grid(pixels: torch.Tensor) -> np.ndarray:
    """[1, 64, 64, 3] or [64, 64, 3] in 0..255 -> [8, 8, 3] block means, the area one preview pixel covers."""
    pixels = pixels.reshape(1, 64, 64, -1).float()
    return F.adaptive_avg_pool2d(pixels.permute(0, 3, 1, 2), 8)[0].permute(1, 2, 0).numpy()


def _hue(rgb: np.ndarray) -> float:
    return colorsys.rgb_to_hsv(*(np.asarray(rgb, dtype=float) / 255))[0] * 360


def _hue_distance(a: np.ndarray, b: np.ndarray) -> float:
    difference = abs(_hue(a) - _hue(b)) % 360
    return min(difference, 360 - difference)


def test_every_background_previews_its_decoded_colour(demo: tuple) -> None:
    _, _, vae = demo
    errors = []
    for background in COLOURS:
        colour = "red" if background != "red" else "blue"
        scene = Scene("circle", colour, background, "large", "center")
        latent = vae.encode(torch.from_numpy(render(scene)).float().div(255)[None])
        decoded = _on_grid(vae.decode(latent).clamp(0, 1).mul(255))
        preview = vae.latent_preview.to_rgb(latent).astype(np.float32)
        background_cells = _on_grid(torch.from_numpy(mask(scene)).float()[..., None])[..., 0] == 0
        off = np.abs(preview - decoded)[background_cells].mean(axis=0)
        assert off.max() < 20, (background, off.round().tolist())  # within 20 levels, per channel, on average
        errors.append(np.abs(preview - decoded).mean())
        if background == "white":  # the case that previewed pink: every background cell near white
            assert preview[background_cells].min() > 215, preview[background_cells].min(axis=0)
    assert np.mean(errors) < 12, errors


def test_a_generated_red_circle_on_blue_previews_red_on_blue(demo: tuple) -> None:
    """The preview of the last step's latent, for a real generation, against the image it decodes to."""
    model, text_encoder, vae = demo
    prompt = "a large red circle in the center on a blue background"
    latent = generate_latents(model, text_encoder, [prompt], [3], EvaluationSettings(), recommended_cfg(DEMO))
    decoded = _on_grid(torch.from_numpy(decode(vae, latent)))
    preview = vae.latent_preview.to_rgb(latent).astype(np.float32)
    red, blue = np.array([220, 30, 30]), np.array([35, 70, 220])
    centre, corners = preview[3:5, 3:5].reshape(-1, 3), preview[[0, 0, 7, 7], [0, 7, 0, 7]]
    assert _hue_distance(decoded[3:5, 3:5].mean(axis=(0, 1)), red) < 15  # the model did draw it
    assert all(_hue_distance(pixel, red) < 25 for pixel in centre), centre.tolist()
    assert all(_hue_distance(pixel, blue) < 25 for pixel in corners), corners.tolist()
    assert np.abs(preview - decoded).mean() < 15
