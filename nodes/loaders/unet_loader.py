"""UNETLoader: a diffusion model alone, from models/diffusion_models (ComfyUI's legacy "unet")."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Literal

from engine.node_api import Choice, Model, NodeContext, node
from nodes.loaders._files import model_fingerprint, model_reference, validate_model_name

_NODE = "UNETLoader"

WeightDtype = Literal["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"]
# weight_dtype -> the reference's storage (modeling/storage.py). ComfyUI's "_fast" adds an fp8 matmul
# kernel on recent GPUs; the bytes held are those of fp8_e4m3fn, so both share one resident module.
_STORAGE: Mapping[str, str] = MappingProxyType({
    "default": "default", "fp8_e4m3fn": "fp8_e4m3fn", "fp8_e4m3fn_fast": "fp8_e4m3fn", "fp8_e5m2": "fp8_e5m2",
})


def _fingerprint(ctx: NodeContext, unet_name: str | None = None) -> str | float:
    return model_fingerprint(ctx, "diffusion_models", unet_name)


def _validate(ctx: NodeContext, unet_name: str | None = None) -> bool | str:
    return validate_model_name(ctx, "diffusion_models", unet_name)


@node(id=_NODE, category="advanced/loaders", display="Load Diffusion Model", fingerprint=_fingerprint,
      validate=_validate)
def unet_loader(
    ctx: NodeContext,
    unet_name: Annotated[str, Choice(source="diffusion_models", tooltip="A file in models/diffusion_models.")],
    weight_dtype: Annotated[
        WeightDtype,
        Choice(tooltip="default keeps the file's precision (fp8 files stay fp8); the fp8 modes hold the "
                       "transformer's linear weights in 8 bits and upcast each layer to compute."),
    ],
) -> Model:
    """Load a diffusion model (the denoising transformer) without text encoder or VAE."""
    return model_reference(ctx, _NODE, "unet_name", "diffusion_models", unet_name, "diffusion_model",
                           storage=_STORAGE[weight_dtype])
