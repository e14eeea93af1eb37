"""`comfy.utils` stand-in: `ProgressBar`, reporting through the running node's context.

ComfyUI routes progress through a global hook (`PROGRESS_BAR_HOOK`); Flowmill has no such
global. Progress goes to `engine.context.CURRENT_NODE_CONTEXT.get().progress(...)`, which the
executor sets around each node call, and which is also an interrupt point (it raises
`engine.context.Interrupted`, aliased as `comfy.model_management.InterruptProcessingException`).
Outside a node call (no context) reports are dropped, as ComfyUI does without a hook.

Only `ProgressBar` is provided; ComfyUI's tensor and file helpers (`common_upscale`,
`load_torch_file`, ...) are not.
"""

from __future__ import annotations

from typing import Any

from engine.context import CURRENT_NODE_CONTEXT


def _preview_image(preview: Any) -> Any:
    """The PIL image to report: from ComfyUI's `(format, image, max_size)` tuple, a PIL image,
    or the first image of an IMAGE tensor `[batch, height, width, channels]` in 0..1."""
    if preview is None:
        return None
    if isinstance(preview, tuple):
        return preview[1] if len(preview) >= 2 else None
    if hasattr(preview, "detach") and getattr(preview, "ndim", 0) in (3, 4):
        from PIL import Image  # lazily: only previews from tensors need Pillow here

        frame = preview[0] if preview.ndim == 4 else preview
        pixels = (frame.detach().float().clamp(0, 1) * 255).round().byte().cpu().numpy()
        return Image.fromarray(pixels)
    return preview


def _report_progress(value: float, total: float, preview: Any = None) -> None:
    """Report to the running node's context; a no-op outside a node call."""
    context = CURRENT_NODE_CONTEXT.get()
    if context is not None:
        context.progress(value, total, _preview_image(preview))


class ProgressBar:
    """ComfyUI's progress bar: `update(n)` advances, `update_absolute(value, total, preview)` sets.

    `node_id` is accepted for compatibility but progress always goes to the node whose call
    is running (the executor maps expansion nodes to their display node itself).
    """

    def __init__(self, total: float, node_id: str | None = None) -> None:
        self.total = total
        self.current: float = 0
        self.node_id = node_id

    def update_absolute(self, value: float, total: float | None = None, preview: Any = None) -> None:
        if total is not None:
            self.total = total
        # ComfyUI clamps overshoot rather than reporting more than 100 %.
        self.current = min(value, self.total)
        _report_progress(self.current, self.total, preview)

    def update(self, value: float) -> None:
        self.update_absolute(self.current + value)
