"""`comfy_api.v0_0_2` stand-in: `ComfyAPI` / `ComfyAPISync` with `execution.set_progress`.

Packs create these objects at import time (`api = ComfyAPI()`); they hold no state and
report to whichever node is running when `set_progress` is called, through
`engine.context.CURRENT_NODE_CONTEXT`. ComfyAPI's caching, lifecycle and node-replacement
registries are not provided.
"""

from __future__ import annotations

from typing import Any

from comfy.utils import _report_progress


class _ExecutionSync:
    def set_progress(
        self,
        value: float,
        max_value: float,
        node_id: str | None = None,
        preview_image: Any = None,
        ignore_size_limit: bool = False,
    ) -> None:
        """Report progress (and an optional PIL image or IMAGE tensor preview) for the running node.

        `node_id` and `ignore_size_limit` are accepted for compatibility; progress always goes
        to the running node, and preview size limits are the executor's.
        """
        _report_progress(value, max_value, preview_image)


class _ExecutionAsync:
    async def set_progress(
        self,
        value: float,
        max_value: float,
        node_id: str | None = None,
        preview_image: Any = None,
        ignore_size_limit: bool = False,
    ) -> None:
        """Async form of `_ExecutionSync.set_progress`."""
        _report_progress(value, max_value, preview_image)


class ComfyAPI:
    """The async API object; `await api.execution.set_progress(value=..., max_value=...)`."""

    def __init__(self) -> None:
        self.execution = _ExecutionAsync()


class ComfyAPISync:
    """The sync API object; `api.execution.set_progress(value=..., max_value=...)`."""

    def __init__(self) -> None:
        self.execution = _ExecutionSync()


__all__ = ["ComfyAPI", "ComfyAPISync"]
