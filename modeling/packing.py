"""FLUX's latent packing: a [B, C, H, W] latent <-> a [B, (H/2)(W/2), 4C] token sequence.

The FLUX transformer sees the latent as a sequence of 2x2 patches, each flattened
channel-major (c, dy, dx), with a 3-axis rotary position id per token: (0, row, column) for
image tokens and all zeros for text tokens. Training and inference both go through these
functions, so the shipped demo model and real FLUX checkpoints pack identically.
"""

from __future__ import annotations

import torch

PATCH = 2


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [B, (H/2)*(W/2), C*4]; H and W must be even."""
    batch, channels, height, width = latents.shape
    if height % PATCH or width % PATCH:
        raise ValueError(f"latent height and width must be even to pack 2x2 patches, got {height}x{width}")
    patches = latents.view(batch, channels, height // PATCH, PATCH, width // PATCH, PATCH)
    patches = patches.permute(0, 2, 4, 1, 3, 5)  # B, rows, cols, C, dy, dx
    return patches.reshape(batch, (height // PATCH) * (width // PATCH), channels * PATCH * PATCH)


def unpack_latents(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B, (H/2)*(W/2), C*4] -> [B, C, H, W], the inverse of `pack_latents`."""
    batch, count, features = tokens.shape
    rows, cols = height // PATCH, width // PATCH
    if count != rows * cols:
        raise ValueError(f"{count} tokens do not tile a {height}x{width} latent ({rows * cols} expected)")
    channels = features // (PATCH * PATCH)
    patches = tokens.view(batch, rows, cols, channels, PATCH, PATCH).permute(0, 3, 1, 4, 2, 5)
    return patches.reshape(batch, channels, height, width)


def image_position_ids(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """[(H/2)*(W/2), 3] rotary ids (0, row, column) for a packed H x W latent."""
    rows = torch.arange(height // PATCH, device=device, dtype=torch.float32)
    cols = torch.arange(width // PATCH, device=device, dtype=torch.float32)
    grid_rows, grid_cols = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack([torch.zeros_like(grid_rows), grid_rows, grid_cols], dim=-1).reshape(-1, 3)


def text_position_ids(length: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """[length, 3] zeros: text tokens share one rotary position, as in FLUX."""
    return torch.zeros(length, 3, device=device, dtype=torch.float32)
