"""Seeded initial noise, bit-compatible with ComfyUI's `prepare_noise`.

Noise is drawn on the CPU in float32 from one `torch.Generator` per call, so a seed gives the same
tensor on every machine and device; callers move it to the model's device afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def seeded_noise(seed: int, shape: Sequence[int], *, batch_index: Sequence[int] | None = None) -> Tensor:
    """Standard normal noise of `shape` ([B, ...]) for `seed`.

    Without `batch_index` the whole batch comes from one `randn` call. With it (a latent that
    came out of a batch split, one index per item), the generator draws one item at a time for
    indices 0..max(batch_index) and item k gets draw number batch_index[k]: a latent split off
    a batch gets the same noise it had inside the batch, as in ComfyUI.
    """
    shape = tuple(int(size) for size in shape)
    generator = torch.Generator("cpu").manual_seed(seed)
    if batch_index is None:
        return torch.randn(shape, generator=generator, dtype=torch.float32)
    indices = [int(index) for index in batch_index]
    if not shape or len(indices) != shape[0]:
        raise ValueError(f"batch_index needs one index per batch item: {len(indices)} indices for shape {shape}")
    if any(index < 0 for index in indices):
        raise ValueError(f"batch_index entries must be >= 0, got {indices}")
    if not indices:
        return torch.zeros(shape, dtype=torch.float32)
    wanted = set(indices)
    draws: dict[int, Tensor] = {}
    for index in range(max(indices) + 1):
        item = torch.randn((1,) + shape[1:], generator=generator, dtype=torch.float32)
        if index in wanted:
            draws[index] = item
    return torch.cat([draws[index] for index in indices], dim=0)
