"""CLIPTextEncode: a prompt encoded by a text encoder into ComfyUI's CONDITIONING."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import Conditioning, Input, NodeContext, String, TextEncoder, node
from modeling.model_refs import require_reference

_NODE = "CLIPTextEncode"


@node(id=_NODE, category="conditioning", display="CLIP Text Encode (Prompt)")
def clip_text_encode(
    ctx: NodeContext,
    text: Annotated[str, String("", multiline=True, tooltip="The text to be encoded.")],
    clip: Annotated[TextEncoder, Input(tooltip="The text encoder used for encoding the text.")],
) -> Conditioning:
    """Encode a text prompt into a conditioning that guides the diffusion model."""
    reference = require_reference(_NODE, "clip", clip, "text_encoder")
    if not isinstance(text, str):
        raise ValueError(f"{_NODE}: text must be a string, got {type(text).__name__}")
    with ctx.models.use(reference) as encoder:
        return encoder.conditioning(text)
