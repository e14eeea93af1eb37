"""VAEEncode: an IMAGE batch into latents (the start of img2img)."""

from __future__ import annotations

from typing import Annotated

import torch

from engine.node_api import Image, Input, Latent, NodeContext, TensorEstimate, Vae, node
from nodes.image._pixels import require_image
from nodes.latent._latents import LATENT_SCALE, WIDEST_LATENT_CHANNELS, require_vae

_NODE = "VAEEncode"


def _estimate(pixels: TensorEstimate) -> TensorEstimate | None:
    """Latents at 1/8 of the image's size, with the widest VAE's channels (the VAE is not known yet)."""
    if len(pixels.shape) != 4:
        return None
    batch, height, width, _ = pixels.shape
    return TensorEstimate((batch, WIDEST_LATENT_CHANNELS, height // LATENT_SCALE, width // LATENT_SCALE))


@node(id=_NODE, category="latent", display="VAE Encode", estimate=_estimate)
def vae_encode(
    ctx: NodeContext,
    pixels: Annotated[Image, Input(tooltip="The images to be encoded.")],
    vae: Annotated[Vae, Input(tooltip="The VAE used for encoding the images.")],
) -> Latent:
    """Encode images into latents; alpha is dropped and sides are cropped to multiples of 8."""
    require_image(_NODE, "pixels", pixels)
    reference = require_vae(_NODE, vae)
    if pixels.shape[-1] < 3:
        raise ValueError(f"{_NODE}: pixels must have 3 (RGB) or 4 (RGBA) channels, got {pixels.shape[-1]}")
    with ctx.models.use(reference) as loaded:
        return {"samples": loaded.encode(pixels[..., :3]).to("cpu", torch.float32)}
