"""Latent and conditioning nodes: empty latents, resizing, VAE encode/decode, text encoding."""

from __future__ import annotations

import pytest
import torch

from tests.nodes.generation.conftest import SINGLE_CHECKPOINT, Nodes


@pytest.fixture
def checkpoint(nodes: Nodes) -> tuple:
    return nodes.run("CheckpointLoaderSimple", ckpt_name=SINGLE_CHECKPOINT)


def test_empty_latents_have_comfyui_shapes(nodes: Nodes) -> None:
    latent = nodes.one("EmptyLatentImage", width=96, height=64, batch_size=2)
    assert set(latent) == {"samples"}
    assert latent["samples"].shape == (2, 4, 8, 12) and not latent["samples"].any()
    sd3 = nodes.one("EmptySD3LatentImage", width=96, height=64, batch_size=3)
    assert sd3["samples"].shape == (3, 16, 8, 12) and sd3["samples"].dtype == torch.float32
    assert not sd3["samples"].any()


def random_latent(batch: int = 1, channels: int = 16, height: int = 8, width: int = 12) -> dict:
    generator = torch.Generator().manual_seed(0)
    return {"samples": torch.randn(batch, channels, height, width, generator=generator), "batch_index": [3]}


@pytest.mark.parametrize("method", ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"])
def test_latent_upscale_sizes_and_keeps_other_keys(nodes: Nodes, method: str) -> None:
    latent = random_latent()
    out = nodes.one("LatentUpscale", samples=latent, upscale_method=method, width=192, height=128, crop="disabled")
    assert out["samples"].shape == (1, 16, 16, 24) and torch.isfinite(out["samples"]).all()
    assert out["batch_index"] == [3] and latent["samples"].shape == (1, 16, 8, 12)
    flat = {"samples": torch.full((1, 16, 8, 12), 0.7)}
    resized = nodes.one("LatentUpscale", samples=flat, upscale_method=method, width=80, height=72, crop="disabled")
    assert resized["samples"].shape == (1, 16, 9, 10)
    assert torch.allclose(resized["samples"], torch.full_like(resized["samples"], 0.7), atol=1e-5)


def test_latent_upscale_zero_side_keeps_aspect_and_floors_at_64(nodes: Nodes) -> None:
    latent = random_latent()  # 96 x 64 pixels

    def size(width: int, height: int) -> tuple[int, int]:
        out = nodes.one("LatentUpscale", samples=latent, upscale_method="bilinear", width=width, height=height,
                        crop="disabled")
        return tuple(out["samples"].shape[2:])

    assert size(192, 0) == (16, 24)
    assert size(0, 32) == (8, 12)  # 32 is raised to ComfyUI's 64-pixel floor
    assert size(8, 8) == (8, 8)
    unchanged = nodes.one("LatentUpscale", samples=latent, upscale_method="area", width=0, height=0, crop="disabled")
    assert unchanged is latent


def test_latent_upscale_center_crop(nodes: Nodes) -> None:
    samples = torch.arange(8 * 12, dtype=torch.float32).reshape(1, 1, 8, 12)
    out = nodes.one("LatentUpscale", samples={"samples": samples}, upscale_method="nearest-exact", width=64,
                    height=64, crop="center")
    assert torch.equal(out["samples"], samples[:, :, :, 2:10])


def test_bislerp_keeps_vector_lengths(nodes: Nodes) -> None:
    # Two orthogonal unit vectors side by side: linear blending shrinks the ones between them,
    # slerp keeps them unit length.
    samples = torch.zeros(1, 2, 8, 2)
    samples[0, 0, :, 0] = 1.0
    samples[0, 1, :, 1] = 1.0

    def upscale(method: str) -> torch.Tensor:
        return nodes.one("LatentUpscale", samples={"samples": samples}, upscale_method=method, width=64, height=64,
                         crop="disabled")["samples"]

    out = upscale("bislerp")
    assert out.shape == (1, 2, 8, 8)
    assert torch.allclose(out.norm(dim=1), torch.ones(1, 8, 8), atol=1e-5)
    assert torch.allclose(out[..., 0], samples[..., 0]) and torch.allclose(out[..., -1], samples[..., 1])
    assert upscale("bilinear").norm(dim=1).min() < 0.9


def test_vae_round_trip_shapes(nodes: Nodes, checkpoint: tuple) -> None:
    _, _, vae = checkpoint
    pixels = torch.rand(2, 48, 64, 4, generator=torch.Generator().manual_seed(1))
    latent = nodes.one("VAEEncode", pixels=pixels, vae=vae)
    assert latent["samples"].shape == (2, 16, 6, 8) and torch.isfinite(latent["samples"]).all()
    assert torch.equal(latent["samples"], nodes.one("VAEEncode", pixels=pixels[..., :3], vae=vae)["samples"])
    image = nodes.one("VAEDecode", samples=latent, vae=vae)
    assert image.shape == (2, 48, 64, 3) and image.min() >= 0 and image.max() <= 1


def test_vae_errors_name_node_and_input(nodes: Nodes, checkpoint: tuple) -> None:
    _, _, vae = checkpoint
    with pytest.raises(ValueError, match=r"VAEDecode: samples has 4 channels but the VAE decodes 16-channel"):
        nodes.one("VAEDecode", samples={"samples": torch.ones(1, 4, 6, 8)}, vae=vae)
    with pytest.raises(ValueError, match=r"VAEDecode: samples must be a LATENT"):
        nodes.one("VAEDecode", samples=torch.ones(1, 16, 6, 8), vae=vae)
    with pytest.raises(ValueError, match=r"VAEDecode: samples must hold a non-empty .* got \(16, 6, 8\)"):
        nodes.one("VAEDecode", samples={"samples": torch.ones(16, 6, 8)}, vae=vae)
    with pytest.raises(ValueError, match=r"VAEDecode: vae must be a VAE .* got NoneType"):
        nodes.one("VAEDecode", samples={"samples": torch.ones(1, 16, 6, 8)}, vae=None)
    with pytest.raises(ValueError, match=r"VAEEncode: pixels must be .*got shape \(2, 48, 64\)"):
        nodes.one("VAEEncode", pixels=torch.rand(2, 48, 64), vae=vae)


def test_clip_text_encode_makes_comfyui_conditioning(nodes: Nodes, checkpoint: tuple) -> None:
    _, clip, _ = checkpoint
    conditioning = nodes.one("CLIPTextEncode", text="a red circle on a blue background", clip=clip)
    ((hidden, extras),) = conditioning
    assert hidden.ndim == 3 and hidden.shape[0] == 1 and hidden.shape[2] == 64
    assert extras["pooled_output"].shape == (1, 64)
    long = nodes.one("CLIPTextEncode", text=" ".join(["red circle"] * 40), clip=clip)
    assert long[0][0].shape[1] > hidden.shape[1]  # long prompts are windowed, not cut off
    with pytest.raises(ValueError, match=r"CLIPTextEncode: clip must be a CLIP from a loader node .* got NoneType"):
        nodes.one("CLIPTextEncode", text="x", clip=None)
