"""A cheap latent-to-RGB projection for live previews: one linear map per latent pixel.

Each preview pixel is `factors.T @ latent[:, y, x] + bias`, in 0..1. A VAE ships its fitted map
as latent_preview.json; `fit` computes one by least squares from latents and the images they
decode to, and `generic` is the fallback when no map is known.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from modeling.errors import ModelFileError

PREVIEW_FILE = "latent_preview.json"


@dataclass(frozen=True, eq=False)
class LatentPreview:
    """factors [C, 3] and bias [3] mapping a C-channel latent pixel to RGB in 0..1."""

    factors: torch.Tensor
    bias: torch.Tensor

    def __post_init__(self) -> None:
        factors = torch.as_tensor(self.factors, dtype=torch.float32).cpu()
        bias = torch.as_tensor(self.bias, dtype=torch.float32).cpu()
        if factors.ndim != 2 or factors.shape[1] != 3 or bias.shape != (3,):
            raise ValueError(f"a latent preview needs factors [C, 3] and bias [3], got {tuple(factors.shape)} "
                             f"and {tuple(bias.shape)}")
        object.__setattr__(self, "factors", factors)
        object.__setattr__(self, "bias", bias)

    @property
    def channels(self) -> int:
        return self.factors.shape[0]

    def to_rgb(self, latent: torch.Tensor) -> np.ndarray:
        """uint8 [h, w, 3] for a latent [C, h, w] or the first item of [B, C, h, w]."""
        if latent.ndim == 4:
            latent = latent[0]
        if latent.ndim != 3 or latent.shape[0] != self.channels:
            raise ValueError(f"expected a {self.channels}-channel latent [C, h, w] or [B, C, h, w], "
                             f"got shape {tuple(latent.shape)}")
        rgb = torch.einsum("chw,ck->hwk", latent.detach().float().cpu(), self.factors) + self.bias
        return rgb.clamp(0, 1).mul(255).round().to(torch.uint8).numpy()

    @classmethod
    def fit(cls, latents: torch.Tensor, images: torch.Tensor) -> LatentPreview:
        """Least-squares map from latents [N, C, h, w] to images [N, H, W, 3] (0..1) averaged down to h x w."""
        if latents.ndim != 4 or images.ndim != 4 or images.shape[-1] != 3 or len(latents) != len(images):
            raise ValueError(f"expected latents [N, C, h, w] and images [N, H, W, 3], got {tuple(latents.shape)} "
                             f"and {tuple(images.shape)}")
        height, width = latents.shape[-2:]
        pixels = images.detach().to(torch.float64).cpu().permute(0, 3, 1, 2)
        target = F.adaptive_avg_pool2d(pixels, (height, width)).permute(0, 2, 3, 1).reshape(-1, 3)
        inputs = latents.detach().to(torch.float64).cpu().permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
        design = torch.cat([inputs, torch.ones(len(inputs), 1, dtype=torch.float64)], dim=1)
        solution = torch.linalg.lstsq(design, target).solution
        return cls(solution[:-1], solution[-1])

    @classmethod
    def generic(cls, channels: int) -> LatentPreview:
        """A fixed fallback: channel c drives colour c mod 3, centred on grey.

        Not faithful to any VAE, but shows the layout emerging during sampling.
        """
        factors = torch.zeros(channels, 3)
        for channel in range(channels):
            factors[channel, channel % 3] = 1.0
        factors = 0.25 * factors / factors.sum(dim=0).clamp(min=1).sqrt()
        return cls(factors, torch.full((3,), 0.5))

    def to_dict(self) -> dict[str, Any]:
        return {"factors": self.factors.tolist(), "bias": self.bias.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatentPreview:
        return cls(torch.tensor(data["factors"], dtype=torch.float32), torch.tensor(data["bias"], dtype=torch.float32))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> LatentPreview:
        """Read a latent_preview.json; a malformed one is a ModelFileError naming it."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls.from_dict(data)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
            raise ModelFileError(f"{path}: not a valid latent preview file ({error})") from None
