"""UNETLoader: a diffusion model alone, from models/diffusion_models (ComfyUI's legacy "unet")."""

from __future__ import annotations

from typing import Annotated, Literal

from engine.node_api import Choice, Model, NodeContext, node
from nodes.loaders._files import model_fingerprint, model_reference, validate_model_name

_NODE = "UNETLoader"

WeightDtype = Literal["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"]


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
        Choice(tooltip="default keeps the file's precision; the fp8 modes arrive with quantized loading."),
    ],
) -> Model:
    """Load a diffusion model (the denoising transformer) without text encoder or VAE."""
    # ComfyUI's fp8 modes store weights in 8 bits and upcast per layer; plain fp8 weights would
    # fail deep inside the transformer, so say so here instead.
    if weight_dtype != "default":
        raise ValueError(
            f"{_NODE}: weight_dtype {weight_dtype!r} is not supported yet (expected 'default'; "
            f"fp8 weights need the quantized loaders)"
        )
    return model_reference(ctx, _NODE, "unet_name", "diffusion_models", unet_name, "diffusion_model")
