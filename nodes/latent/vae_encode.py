"""VAEEncode: an IMAGE batch into latents (the start of img2img)."""

from __future__ import annotations

from typing import Annotated

import torch

from engine.node_api import Image, Input, Latent, Vae, node
from nodes.image._pixels import require_image
from nodes.latent._latents import require_vae

_NODE = "VAEEncode"


@node(id=_NODE, category="latent", display="VAE Encode")
def vae_encode(
    pixels: Annotated[Image, Input(tooltip="The images to be encoded.")],
    vae: Annotated[Vae, Input(tooltip="The VAE used for encoding the images.")],
) -> Latent:
    """Encode images into latents; alpha is dropped and sides are cropped to multiples of 8."""
    require_image(_NODE, "pixels", pixels)
    require_vae(_NODE, vae)
    if pixels.shape[-1] < 3:
        raise ValueError(f"{_NODE}: pixels must have 3 (RGB) or 4 (RGBA) channels, got {pixels.shape[-1]}")
    return {"samples": vae.encode(pixels[..., :3]).to("cpu", torch.float32)}
