"""How a model's weights are held in memory: the step in loading between building the module on
the meta device and assigning the stored tensors.

A `WeightStorage` may swap the built module's layers for ones that hold their weight in another
format, and returns those weights converted; everything it leaves alone is cast to the compute
dtype by the caller (modeling/instantiate.py). The model reference's `storage` field names the
storage (`storage_named`), so quantized formats (GGUF, NF4) plug in here as further entries.

The fp8 storages keep every Linear weight in 8 bits (1 byte per weight), as ComfyUI's fp8
`weight_dtype` options and fp8 files do, and upcast it to the input's dtype in each forward
(ComfyUI's "manual cast"): float32 on the CPU, bf16/fp16 on a GPU. Biases, norms and embeddings
stay in the compute dtype. Since the bytes really are smaller, the model manager's accounting
(modeling/placement.py `module_bytes`) sees the smaller size without being told.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

FP8_DTYPES: tuple[torch.dtype, ...] = (torch.float8_e4m3fn, torch.float8_e5m2)


class WeightStorage(Protocol):
    """Adapts a module built on the meta device to hold some of its weights in a storage format."""

    def compute_dtype(self, file_dtype: torch.dtype, device: torch.device) -> torch.dtype:
        """The dtype the module computes in on `device`; `file_dtype` is what the file's precision gives."""
        ...

    def prepare(self, module: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Swap the layers this storage holds and return their weights (module keys), converted.

        `state` is under the module's keys and already checked against its shapes.
        """
        ...


class UpcastLinear(nn.Linear):
    """A Linear whose weight is stored in a narrow dtype and cast to the input's dtype per call."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        weight = self.weight.to(input.dtype)
        bias = None if self.bias is None else self.bias.to(input.dtype)
        return F.linear(input, weight, bias)


@dataclass(frozen=True)
class AsStored:
    """The file's own precision: weights are cast to the compute dtype, except Linear weights the file
    stores in fp8 (plain fp8 files, no scales), which stay fp8 and are upcast per call."""

    def compute_dtype(self, file_dtype: torch.dtype, device: torch.device) -> torch.dtype:
        return file_dtype

    def prepare(self, module: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        stored_fp8 = {key: value for key, value in state.items() if value.dtype in FP8_DTYPES}
        return _upcast_linears(module, state, lambda key: stored_fp8[key].dtype if key in stored_fp8 else None)


@dataclass(frozen=True)
class Float8:
    """Every Linear weight held in `dtype` (float8_e4m3fn or float8_e5m2), upcast per call."""

    dtype: torch.dtype

    def compute_dtype(self, file_dtype: torch.dtype, device: torch.device) -> torch.dtype:
        """float32 on the CPU; bfloat16 on a GPU whatever the file holds, as ComfyUI's fp8 modes compute."""
        return torch.float32 if device.type == "cpu" else torch.bfloat16

    def prepare(self, module: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return _upcast_linears(module, state, lambda key: self.dtype)


def _upcast_linears(module: nn.Module, state: Mapping[str, torch.Tensor],
                    dtype_of: Callable[[str], torch.dtype | None]) -> dict[str, torch.Tensor]:
    """Replace each Linear whose weight `dtype_of` gives a dtype with an UpcastLinear, and return
    those weights in that dtype (rounded to nearest, as `Tensor.to` does)."""
    held: dict[str, torch.Tensor] = {}
    for name, layer in list(module.named_modules()):
        if not name or type(layer) is not nn.Linear:  # subclasses may compute differently; leave them alone
            continue
        key = f"{name}.weight"
        dtype = dtype_of(key)
        if dtype is None or key not in state:
            continue
        _replace(module, name, _upcast_copy(layer))
        held[key] = state[key].to(dtype)  # round to nearest; no copy when the file already holds `dtype`
    return held


def _upcast_copy(layer: nn.Linear) -> UpcastLinear:
    """An UpcastLinear of `layer`'s size with parameters on the meta device, as the built module has
    them (the weights are assigned afterwards); the state dict keys stay the same."""
    with torch.device("meta"):
        return UpcastLinear(layer.in_features, layer.out_features, bias=layer.bias is not None)


def _replace(root: nn.Module, name: str, replacement: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, replacement)


# UNETLoader's weight_dtype options, and "default". fp8_e4m3fn_fast stores the same bytes as
# fp8_e4m3fn (its difference in ComfyUI is an fp8 matmul kernel on recent GPUs), so the loader node
# names this storage for both and the two share one resident module.
STORAGES: Mapping[str, WeightStorage] = MappingProxyType({
    "default": AsStored(),
    "fp8_e4m3fn": Float8(torch.float8_e4m3fn),
    "fp8_e5m2": Float8(torch.float8_e5m2),
})


def storage_named(name: str) -> WeightStorage:
    """The storage called `name`, or a ValueError listing the known ones."""
    if name not in STORAGES:
        raise ValueError(f"unknown weight storage {name!r}; expected one of {', '.join(repr(key) for key in STORAGES)}")
    return STORAGES[name]
