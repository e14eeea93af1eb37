"""VAEDecode: latents back to an IMAGE batch."""

from __future__ import annotations

from typing import Annotated

import torch

from engine.node_api import Image, Input, Latent, NodeContext, TensorEstimate, Vae, node
from modeling.latents import require_latent
from nodes.latent._latents import LATENT_SCALE, require_vae

_NODE = "VAEDecode"


def _estimate(samples: TensorEstimate) -> TensorEstimate | None:
    """RGB images 8x the latent's size (decoded to float32 on the CPU)."""
    if len(samples.shape) != 4:
        return None
    batch, _, height, width = samples.shape
    return TensorEstimate((batch, height * LATENT_SCALE, width * LATENT_SCALE, 3))


@node(id=_NODE, category="latent", display="VAE Decode", estimate=_estimate)
def vae_decode(
    ctx: NodeContext,
    samples: Annotated[Latent, Input(tooltip="The latent to be decoded.")],
    vae: Annotated[Vae, Input(tooltip="The VAE used for decoding the latent.")],
) -> Image:
    """Decode latent images back into pixel space images."""
    latents = require_latent(_NODE, "samples", samples)
    with ctx.models.use(require_vae(_NODE, vae)) as loaded:
        if latents.shape[1] != loaded.latent_channels:
            raise ValueError(
                f"{_NODE}: samples has {latents.shape[1]} channels but the VAE decodes {loaded.latent_channels}-channel "
                f"latents (shape {tuple(latents.shape)}); was it made by a sampler using this VAE's model?"
            )
        return loaded.decode(latents).to("cpu", torch.float32)
