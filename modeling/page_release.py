"""Giving the pages of a memory-mapped weights file back once a converted copy of them exists.

safetensors maps a file read-only and its tensors are views into the mapping; every page a load
reads stays in the process's resident set until the mapping goes. Loading at another precision (a
bfloat16 file computed in float32 on the CPU) builds a converted copy of each tensor, so without
this the peak is the copies plus the whole file: 1.5x the float32 weights. `release` tells the
kernel (madvise MADV_DONTNEED) that the pages under a tensor already converted are not needed; a
later read of them faults them back in from the file, so nothing changes for anyone still holding
a view. Only whole pages inside a mapping of a .safetensors file are released: on anonymous memory
MADV_DONTNEED would discard data. safetensors maps files private and writable (copy on write), where
it would also discard a page someone wrote to; Flowmill never writes into a loaded weight (patches
and storage formats build new tensors: modeling/lora/patch.py, modeling/storage.py), so every page
there still equals the file. Linux only; elsewhere `release` does nothing.
"""

from __future__ import annotations

import ctypes
import mmap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

_MADV_DONTNEED = 4  # Linux's value (asm-generic/mman-common.h)
_MAPS = Path("/proc/self/maps")


@dataclass(frozen=True)
class WeightFileMappings:
    """The address ranges of this process's mappings of .safetensors files when it was taken."""

    ranges: tuple[tuple[int, int], ...]
    madvise: Callable[..., int] | None = None  # libc's, looked up once per load

    @classmethod
    def of_this_process(cls) -> WeightFileMappings:
        try:
            lines = _MAPS.read_text().splitlines()
        except OSError:
            return cls(())  # not Linux: nothing is released
        ranges = []
        for line in lines:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].startswith("/") and fields[5].endswith(".safetensors"):
                start, end = (int(value, 16) for value in fields[0].split("-"))
                ranges.append((start, end))
        return cls(tuple(ranges), ctypes.CDLL(None, use_errno=True).madvise if ranges else None)

    def release(self, tensor: torch.Tensor) -> None:
        """Drop the whole pages under `tensor` from the resident set, if they lie in a weights file's mapping."""
        start = tensor.data_ptr()
        end = start + tensor.numel() * tensor.element_size()
        if self.madvise is None or not any(low <= start and end <= high for low, high in self.ranges):
            return
        first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
        last = end // mmap.PAGESIZE * mmap.PAGESIZE
        if last > first:
            self.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), _MADV_DONTNEED)
