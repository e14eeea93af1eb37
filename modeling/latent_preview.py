"""A cheap latent-to-RGB projection for live previews: one small map per latent pixel.

Each preview pixel is `factors.T @ latent[:, y, x] + bias`, in 0..1, or, when the map has a hidden
layer, `factors.T @ silu(hidden_factors.T @ patch + hidden_bias) + bias`, where `patch` is the
`kernel` x `kernel` neighbourhood of latent pixels around (y, x) (edges repeated), flattened channel
by channel. A VAE ships its fitted map as latent_preview.json; `fit` computes one from latents and
the images they decode to (least squares, or a one-hidden-layer fit when asked for hidden units),
and `generic` is the fallback when no map is known.

Why a hidden layer and a neighbourhood: a VAE's latent is not linear in colour, and a decoded pixel
depends on its neighbours' latents too. For the demo VAE the best linear map misses the decoded
image by 37 levels (0-255) on average, previewing white as pink and red-on-blue as a rainbow; 32
hidden units over one latent pixel bring that to 10, over its 3x3 neighbourhood to 7, for ~4,700
multiply-adds per latent pixel (a few milliseconds for a 128x128 latent).
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
    """factors [C, 3] and bias [3] mapping a C-channel latent pixel to RGB in 0..1; with a hidden layer,
    hidden_factors [C * kernel^2, H] and hidden_bias [H] first map the pixel's kernel x kernel neighbourhood
    to H units (SiLU), and factors is [H, 3]."""

    factors: torch.Tensor
    bias: torch.Tensor
    hidden_factors: torch.Tensor | None = None
    hidden_bias: torch.Tensor | None = None
    kernel: int = 1

    def __post_init__(self) -> None:
        factors = torch.as_tensor(self.factors, dtype=torch.float32).cpu()
        bias = torch.as_tensor(self.bias, dtype=torch.float32).cpu()
        if factors.ndim != 2 or factors.shape[1] != 3 or bias.shape != (3,):
            raise ValueError(f"a latent preview needs factors [C, 3] and bias [3], got {tuple(factors.shape)} "
                             f"and {tuple(bias.shape)}")
        object.__setattr__(self, "factors", factors)
        object.__setattr__(self, "bias", bias)
        if (self.hidden_factors is None) != (self.hidden_bias is None):
            raise ValueError("a latent preview's hidden layer needs both hidden_factors and hidden_bias")
        if not isinstance(self.kernel, int) or self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"a latent preview's kernel must be an odd number of latent pixels, got {self.kernel!r}")
        if self.hidden_factors is None:
            if self.kernel != 1:
                raise ValueError("a latent preview without a hidden layer reads one latent pixel (kernel 1)")
            return
        hidden_factors = torch.as_tensor(self.hidden_factors, dtype=torch.float32).cpu()
        hidden_bias = torch.as_tensor(self.hidden_bias, dtype=torch.float32).cpu()
        units, window = factors.shape[0], self.kernel**2
        if (hidden_factors.ndim != 2 or hidden_factors.shape[1] != units or hidden_factors.shape[0] % window
                or hidden_bias.shape != (units,)):
            raise ValueError(f"a hidden layer of {units} units over {self.kernel}x{self.kernel} latent pixels needs "
                             f"hidden_factors [C * {window}, {units}] and hidden_bias [{units}], got "
                             f"{tuple(hidden_factors.shape)} and {tuple(hidden_bias.shape)}")
        object.__setattr__(self, "hidden_factors", hidden_factors)
        object.__setattr__(self, "hidden_bias", hidden_bias)

    @property
    def channels(self) -> int:
        if self.hidden_factors is None:
            return self.factors.shape[0]
        return self.hidden_factors.shape[0] // self.kernel**2

    def _project(self, latents: torch.Tensor) -> torch.Tensor:
        """[N, C, h, w] latents -> [N, h, w, 3] RGB (unclamped)."""
        batch, _, height, width = latents.shape
        if self.hidden_factors is None or self.hidden_bias is None:
            features = latents.permute(0, 2, 3, 1)
        else:
            pad = self.kernel // 2
            padded = F.pad(latents, (pad, pad, pad, pad), mode="replicate") if pad else latents
            patches = F.unfold(padded, self.kernel)  # [N, C * k * k, h * w], channel-major like a conv weight
            patches = patches.transpose(1, 2).reshape(batch, height, width, -1)
            features = F.silu(patches @ self.hidden_factors + self.hidden_bias)
        return features @ self.factors + self.bias

    def to_rgb(self, latent: torch.Tensor) -> np.ndarray:
        """uint8 [h, w, 3] for a latent [C, h, w] or the first item of [B, C, h, w]."""
        if latent.ndim == 4:
            latent = latent[0]
        if latent.ndim != 3 or latent.shape[0] != self.channels:
            raise ValueError(f"expected a {self.channels}-channel latent [C, h, w] or [B, C, h, w], "
                             f"got shape {tuple(latent.shape)}")
        with torch.no_grad():
            rgb = self._project(latent.detach().float().cpu()[None])[0]
        return rgb.clamp(0, 1).mul(255).round().to(torch.uint8).numpy()

    @classmethod
    def fit(cls, latents: torch.Tensor, images: torch.Tensor, hidden_units: int = 0, kernel: int = 1,
            steps: int = 4000, seed: int = 0) -> LatentPreview:
        """A map from latents [N, C, h, w] to images [N, H, W, 3] (0..1) averaged down to h x w: least squares
        when `hidden_units` is 0, else a hidden layer of that many units over `kernel` x `kernel` latent
        pixels, fitted by `steps` of Adam on the mean absolute error (seeded, so a fit is reproducible)."""
        if latents.ndim != 4 or images.ndim != 4 or images.shape[-1] != 3 or len(latents) != len(images):
            raise ValueError(f"expected latents [N, C, h, w] and images [N, H, W, 3], got {tuple(latents.shape)} "
                             f"and {tuple(images.shape)}")
        height, width = latents.shape[-2:]
        pixels = images.detach().to(torch.float64).cpu().permute(0, 3, 1, 2)
        target = F.adaptive_avg_pool2d(pixels, (height, width)).permute(0, 2, 3, 1)  # [N, h, w, 3]
        if hidden_units > 0:
            return cls._fit_hidden(latents.detach().float().cpu(), target.float(), hidden_units, kernel, steps, seed)
        inputs = latents.detach().to(torch.float64).cpu().permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
        design = torch.cat([inputs, torch.ones(len(inputs), 1, dtype=torch.float64)], dim=1)
        solution = torch.linalg.lstsq(design, target.reshape(-1, 3)).solution
        return cls(solution[:-1], solution[-1])

    @classmethod
    def _fit_hidden(cls, latents: torch.Tensor, target: torch.Tensor, units: int, kernel: int, steps: int,
                    seed: int) -> LatentPreview:
        generator = torch.Generator().manual_seed(seed)
        inputs = latents.shape[1] * kernel**2
        hidden_factors = (torch.randn(inputs, units, generator=generator) / inputs**0.5).requires_grad_()
        hidden_bias = torch.zeros(units, requires_grad=True)
        factors = (torch.randn(units, 3, generator=generator) / units**0.5).requires_grad_()
        bias = target.reshape(-1, 3).mean(dim=0).clone().requires_grad_()
        optimizer = torch.optim.Adam([hidden_factors, hidden_bias, factors, bias], lr=3e-3)
        batch = min(64, len(latents))
        with torch.enable_grad():
            for step in range(steps):
                if step == (2 * steps) // 3:  # a lower rate for the last third settles the fit
                    for group in optimizer.param_groups:
                        group["lr"] = 1e-3
                rows = torch.randint(0, len(latents), (batch,), generator=generator)
                # The same projection `to_rgb` runs, on a batch of latents.
                current = cls(factors, bias, hidden_factors, hidden_bias, kernel)
                loss = (current._project(latents[rows]) - target[rows]).abs().mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        return cls(factors.detach(), bias.detach(), hidden_factors.detach(), hidden_bias.detach(), kernel)

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
        data: dict[str, Any] = {"factors": self.factors.tolist(), "bias": self.bias.tolist()}
        if self.hidden_factors is not None and self.hidden_bias is not None:
            data["hidden"] = {"kernel": self.kernel, "factors": self.hidden_factors.tolist(),
                              "bias": self.hidden_bias.tolist()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatentPreview:
        hidden = data.get("hidden")
        return cls(torch.tensor(data["factors"], dtype=torch.float32), torch.tensor(data["bias"], dtype=torch.float32),
                   None if hidden is None else torch.tensor(hidden["factors"], dtype=torch.float32),
                   None if hidden is None else torch.tensor(hidden["bias"], dtype=torch.float32),
                   1 if hidden is None else hidden.get("kernel", 1))

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
