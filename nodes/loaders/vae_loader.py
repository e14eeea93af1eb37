"""VAELoader: an autoencoder from models/vae."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import Choice, NodeContext, Vae, node
from nodes.loaders._files import model_fingerprint, model_reference, validate_model_name

_NODE = "VAELoader"


def _fingerprint(ctx: NodeContext, vae_name: str | None = None) -> str | float:
    return model_fingerprint(ctx, "vae", vae_name)


def _validate(ctx: NodeContext, vae_name: str | None = None) -> bool | str:
    return validate_model_name(ctx, "vae", vae_name)


@node(id=_NODE, category="loaders", display="Load VAE", fingerprint=_fingerprint,
      validate=_validate)
def vae_loader(
    ctx: NodeContext,
    vae_name: Annotated[str, Choice(source="vae", tooltip="A VAE file in models/vae.")],
) -> Vae:
    """Load a VAE, which turns images into latents and back."""
    return model_reference(ctx, _NODE, "vae_name", "vae", vae_name, "vae")
