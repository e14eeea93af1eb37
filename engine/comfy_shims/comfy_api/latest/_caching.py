"""`comfy_api.latest._caching` stand-in: the `CacheProvider` base class, so packs that define
external cache providers (ComfyUI's newest testing pack does) can import. Flowmill never calls
providers; see `comfy_execution.cache_provider`."""

from __future__ import annotations

from typing import Any


class CacheProvider:
    """Base class of an external node-output cache; Flowmill does not consult one."""

    async def on_lookup(self, context: Any) -> Any:
        return None

    async def on_store(self, context: Any, value: Any) -> None:
        return None
