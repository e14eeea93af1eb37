"""The VAE wrapper: images in 0..1 to normalised latents and back, as ComfyUI's VAE object does.

Latents leave `encode` normalised for the diffusion model, `(mean - shift) * scale`, with the
posterior mean rather than a sample so that encoding is deterministic. Results come back on
the device their input was on, as float32.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from modeling.latent_preview import LatentPreview


@dataclass(frozen=True, eq=False)
class Vae:
    """An AutoencoderKL with its latent normalisation and, when known, its preview projection."""

    module: nn.Module
    shift: float
    scale: float
    latent_channels: int
    device: torch.device
    dtype: torch.dtype
    latent_preview: LatentPreview | None = None

    @property
    def downscale(self) -> int:
        """Pixels per latent pixel along each side (8 for every AutoencoderKL with four blocks)."""
        return 2 ** (len(self.module.config.block_out_channels) - 1)

    def with_latent_preview(self, preview: LatentPreview | None) -> Vae:
        return replace(self, latent_preview=preview)

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Images [B, H, W, 3] in 0..1 -> latents [B, C, H/8, W/8].

        Sizes that are not multiples of 8 lose their odd rows and columns evenly from both
        sides (ComfyUI's crop); an alpha channel is ignored.
        """
        if pixels.ndim != 4 or pixels.shape[-1] not in (3, 4):
            raise ValueError(f"VAE encode expects images [B, H, W, 3], got shape {tuple(pixels.shape)}")
        pixels = self._crop(pixels[..., :3])
        images = pixels.permute(0, 3, 1, 2).to(device=self.device, dtype=self.dtype) * 2 - 1
        mean = self.module.encode(images).latent_dist.mean
        return ((mean.float() - self.shift) * self.scale).to(pixels.device)

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Normalised latents [B, C, h, w] -> images [B, 8h, 8w, 3] in 0..1."""
        if latent.ndim != 4 or latent.shape[1] != self.latent_channels:
            raise ValueError(
                f"this VAE decodes {self.latent_channels}-channel latents [B, {self.latent_channels}, h, w], "
                f"got shape {tuple(latent.shape)}"
            )
        raw = latent.to(device=self.device, dtype=torch.float32) / self.scale + self.shift
        images = self.module.decode(raw.to(self.dtype)).sample
        return ((images.float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).to(latent.device)

    def _crop(self, pixels: torch.Tensor) -> torch.Tensor:
        height, width = pixels.shape[1:3]
        keep_h, keep_w = height // self.downscale * self.downscale, width // self.downscale * self.downscale
        if keep_h == 0 or keep_w == 0:
            raise ValueError(f"VAE encode needs images of at least {self.downscale}x{self.downscale} pixels, "
                             f"got {width}x{height}")
        top, left = (height - keep_h) // 2, (width - keep_w) // 2
        return pixels[:, top:top + keep_h, left:left + keep_w]
