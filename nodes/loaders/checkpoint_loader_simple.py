"""CheckpointLoaderSimple: a diffusion model, its text encoder and its VAE from one checkpoint."""

from __future__ import annotations

from typing import Annotated, NamedTuple

from engine.node_api import Choice, Model, NodeContext, TextEncoder, Vae, node
from nodes.loaders._files import model_fingerprint, model_reference, validate_model_name

_NODE = "CheckpointLoaderSimple"


class LoadedCheckpoint(NamedTuple):
    MODEL: Model
    CLIP: TextEncoder
    VAE: Vae


def _fingerprint(ctx: NodeContext, ckpt_name: str | None = None) -> str | float:
    return model_fingerprint(ctx, "checkpoints", ckpt_name)


def _validate(ctx: NodeContext, ckpt_name: str | None = None) -> bool | str:
    return validate_model_name(ctx, "checkpoints", ckpt_name)


@node(id=_NODE, category="loaders", display="Load Checkpoint", fingerprint=_fingerprint,
      validate=_validate)
def checkpoint_loader_simple(
    ctx: NodeContext,
    ckpt_name: Annotated[
        str,
        Choice(
            source="checkpoints",
            tooltip="A single .safetensors checkpoint or a diffusers-layout folder in models/checkpoints.",
        ),
    ],
) -> LoadedCheckpoint:
    """Load a checkpoint (one file or a diffusers folder) as its diffusion model, text encoder and VAE."""
    parts = [model_reference(ctx, _NODE, "ckpt_name", "checkpoints", ckpt_name, component)
             for component in ("diffusion_model", "text_encoder", "vae")]
    return LoadedCheckpoint(*parts)
