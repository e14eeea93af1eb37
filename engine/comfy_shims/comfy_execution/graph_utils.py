"""`comfy_execution.graph_utils` stand-in: Flowmill's GraphBuilder, `is_link` and ExecutionBlocker."""

from __future__ import annotations

from engine.graph_builder import GraphBuilder, Node
from engine.spec import ExecutionBlocker
from engine.wire import is_link

__all__ = ["ExecutionBlocker", "GraphBuilder", "Node", "is_link"]
