"""`comfy.comfy_types` stand-in: `IO`, `ComfyNodeABC`, `CheckLazyMixin` and the typed dicts.

ComfyUI's media input types (`ImageInput`, `VideoInput`, ...) and UNet wrapper protocols are
not provided.
"""

from __future__ import annotations

from comfy.comfy_types.node_typing import (
    IO,
    CheckLazyMixin,
    ComfyNodeABC,
    FileLocator,
    HiddenInputTypeDict,
    InputTypeDict,
    InputTypeOptions,
)

__all__ = [
    "IO",
    "CheckLazyMixin",
    "ComfyNodeABC",
    "FileLocator",
    "HiddenInputTypeDict",
    "InputTypeDict",
    "InputTypeOptions",
]
