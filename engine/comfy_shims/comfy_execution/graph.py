"""`comfy_execution.graph` stand-in: only `ExecutionBlocker`, Flowmill's own class re-exported.

Re-exporting (not redefining) it means a blocker a pack returns is the exact type the
executor checks for. ComfyUI's `DynamicPrompt` and scheduling classes are not provided;
the executor passes its own DYNPROMPT object to nodes that ask for one.
"""

from __future__ import annotations

from engine.spec import ExecutionBlocker

__all__ = ["ExecutionBlocker"]
