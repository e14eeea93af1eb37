"""CLIPTextEncode: a prompt encoded by a text encoder into ComfyUI's CONDITIONING."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import Conditioning, Input, String, TextEncoder, node

_NODE = "CLIPTextEncode"


@node(id=_NODE, category="conditioning", display="CLIP Text Encode (Prompt)")
def clip_text_encode(
    text: Annotated[str, String("", multiline=True, tooltip="The text to be encoded.")],
    clip: Annotated[TextEncoder, Input(tooltip="The text encoder used for encoding the text.")],
) -> Conditioning:
    """Encode a text prompt into a conditioning that guides the diffusion model."""
    if clip is None or not callable(getattr(clip, "conditioning", None)):
        raise ValueError(
            f"{_NODE}: clip must be a text encoder (expected the CLIP output of a loader), got "
            f"{type(clip).__name__}. A checkpoint without a text encoder has no usable CLIP output."
        )
    if not isinstance(text, str):
        raise ValueError(f"{_NODE}: text must be a string, got {type(text).__name__}")
    return clip.conditioning(text)
