"""`comfy_execution.cache_provider` stand-in: registration accepted, providers never called.

ComfyUI keeps registered providers in a module-level list and consults them on every cache
lookup and store. Flowmill has no process-global registry (and its cache is its own), so a
registration is logged and dropped: the pack imports and its nodes work, but outputs never
reach the provider.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def register_cache_provider(provider: Any) -> None:
    log.warning("external cache providers are not supported; %s is ignored", type(provider).__name__)


def unregister_cache_provider(provider: Any) -> None:
    """Nothing to undo: registration kept nothing."""
