"""CLIPLoader: a text encoder from models/text_encoders (ComfyUI's legacy "clip")."""

from __future__ import annotations

from typing import Annotated, Literal

from engine.node_api import Choice, NodeContext, TextEncoder, node
from nodes.loaders._files import model_fingerprint, model_reference, validate_model_name

_NODE = "CLIPLoader"

# ComfyUI's `type` values, kept whole so its workflows validate; each names the model family the
# encoder belongs to, which decides the encoder architecture.
ClipType = Literal[
    "stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "pixart", "cosmos",
    "lumina2", "wan", "hidream", "chroma", "ace", "omnigen2", "qwen_image", "hunyuan_image",
]
# The types whose text encoder is a CLIP text model, the one architecture loaded so far.
_ENCODER_KINDS = {"stable_diffusion": "clip", "sd3": "clip"}


def _fingerprint(ctx: NodeContext, clip_name: str | None = None) -> str | float:
    return model_fingerprint(ctx, "text_encoders", clip_name)


def _validate(ctx: NodeContext, clip_name: str | None = None) -> bool | str:
    return validate_model_name(ctx, "text_encoders", clip_name)


@node(id=_NODE, category="advanced/loaders", display="Load CLIP", fingerprint=_fingerprint,
      validate=_validate)
def clip_loader(
    ctx: NodeContext,
    clip_name: Annotated[str, Choice(source="text_encoders", tooltip="A text encoder file in models/text_encoders.")],
    type: Annotated[ClipType, Choice(tooltip="The model family the encoder is for; CLIP-L uses stable_diffusion.")],
    device: Annotated[Literal["default", "cpu"], Choice(tooltip="cpu keeps the encoder off the GPU.")] | None = None,
) -> TextEncoder:
    """Load a text encoder (with the tokenizer stored beside it) for CLIPTextEncode."""
    kind = _ENCODER_KINDS.get(type)
    if kind is None:
        raise ValueError(
            f"{_NODE}: type {type!r} needs a text encoder architecture Flowmill cannot load yet "
            f"(expected one of {sorted(_ENCODER_KINDS)})"
        )
    return model_reference(ctx, _NODE, "clip_name", "text_encoders", clip_name, "text_encoder", variant=kind,
                           compute="cpu" if device == "cpu" else "default")
