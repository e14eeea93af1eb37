"""Executor events as ComfyUI websocket messages (names, fields and order of comfyui-compat.md §10).

Pure functions: no sockets, no aiohttp. Per-node cost is constant: `progress_state` carries
only the node that changed, never the whole prompt (ComfyUI resends every node each time).
"""

from __future__ import annotations

import io
import json
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.events import (
    Event,
    ExecutionFailed,
    ExecutionInterrupted,
    ExecutionStarted,
    ExecutionSucceeded,
    NodeFinished,
    NodePreview,
    NodeProgress,
    NodesCached,
    NodeStarted,
)

# Binary frame event types (comfyui-compat.md §10.4).
PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4
JPEG_FORMAT = 1
PREVIEW_MAX_SIDE = 512


@dataclass(frozen=True)
class Message:
    """One outgoing message. `data` is a JSON dict for text frames; previews carry `image`."""

    type: str
    data: dict[str, Any]
    image: bytes | None = None

    @property
    def is_binary(self) -> bool:
        return self.image is not None


def status_message(queue_remaining: int, sid: str | None = None) -> Message:
    data: dict[str, Any] = {"status": {"exec_info": {"queue_remaining": queue_remaining}}}
    if sid is not None:
        data["sid"] = sid
    return Message("status", data)


def prompt_done_message(prompt_id: str) -> Message:
    """`executing` with `node: null` ends a prompt for ComfyUI clients."""
    return Message("executing", {"node": None, "display_node": None, "prompt_id": prompt_id})


def _progress_state(event: NodeProgress, state: str) -> Message:
    entry = {"value": event.value, "max": event.max, "state": state, "node_id": event.node_id,
             "display_node_id": event.display_node_id, "parent_node_id": None, "real_node_id": event.node_id}
    return Message("progress_state", {"prompt_id": event.prompt_id, "nodes": {event.node_id: entry}})


def encode_preview(image: Any) -> bytes:
    """JPEG bytes of a PIL preview, downscaled so previews stay cheap to send."""
    preview = image.convert("RGB")
    preview.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
    buffer = io.BytesIO()
    preview.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _executing(event: NodeStarted) -> list[Message]:
    return [Message("executing", {"node": event.node_id, "display_node": event.display_node_id,
                                  "prompt_id": event.prompt_id})]


def _progress(event: NodeProgress) -> list[Message]:
    return [Message("progress", {"value": event.value, "max": event.max, "prompt_id": event.prompt_id,
                                 "node": event.node_id}),
            _progress_state(event, "finished" if event.value >= event.max else "running")]


def _executed(event: NodeFinished) -> list[Message]:
    if event.ui is None:
        return []
    return [Message("executed", {"node": event.node_id, "display_node": event.display_node_id,
                                 "output": event.ui, "prompt_id": event.prompt_id})]


def _preview(event: NodePreview) -> list[Message]:
    return [Message("preview", {"node_id": event.node_id, "display_node_id": event.display_node_id,
                                "prompt_id": event.prompt_id, "image_type": "image/jpeg"},
                    image=encode_preview(event.image))]


def _started(event: ExecutionStarted) -> list[Message]:
    return [Message("execution_start", {"prompt_id": event.prompt_id, "timestamp": event.timestamp})]


def _cached(event: NodesCached) -> list[Message]:
    return [Message("execution_cached", {"nodes": event.nodes, "prompt_id": event.prompt_id})]


def _succeeded(event: ExecutionSucceeded) -> list[Message]:
    return [Message("execution_success", {"prompt_id": event.prompt_id, "timestamp": event.timestamp})]


def _now_ms() -> int:
    # ComfyUI stamps every history message; the jobs API reads a run's end time from it.
    return int(time.time() * 1000)


def _failed(event: ExecutionFailed) -> list[Message]:
    return [Message("execution_error", {
        "prompt_id": event.prompt_id, "node_id": event.node_id, "node_type": event.node_type,
        "executed": event.executed, "exception_message": event.exception_message,
        "exception_type": event.exception_type, "traceback": event.traceback,
        "current_inputs": event.current_inputs, "current_outputs": event.current_outputs, "timestamp": _now_ms()})]


def _interrupted(event: ExecutionInterrupted) -> list[Message]:
    return [Message("execution_interrupted", {"prompt_id": event.prompt_id, "node_id": event.node_id,
                                              "node_type": event.node_type, "executed": event.executed,
                                              "timestamp": _now_ms()})]


# One lookup per event instead of an isinstance chain: this runs for every node of every prompt.
_TRANSLATORS: dict[type, Callable[[Any], list[Message]]] = {
    NodeStarted: _executing, NodeProgress: _progress, NodeFinished: _executed, NodePreview: _preview,
    ExecutionStarted: _started, NodesCached: _cached, ExecutionSucceeded: _succeeded,
    ExecutionFailed: _failed, ExecutionInterrupted: _interrupted,
}


def messages_for(event: Event) -> list[Message]:
    """The websocket messages for one executor event (runs on the worker thread)."""
    translate = _TRANSLATORS.get(type(event))
    return translate(event) if translate else []


def binary_frame(message: Message, with_metadata: bool) -> bytes:
    """A preview frame: type 4 (JSON metadata + image) for clients that asked for it, else type 1."""
    assert message.image is not None
    if with_metadata:
        metadata = json.dumps(message.data).encode()
        return struct.pack(">II", PREVIEW_IMAGE_WITH_METADATA, len(metadata)) + metadata + message.image
    return struct.pack(">II", PREVIEW_IMAGE, JPEG_FORMAT) + message.image


# Messages kept in a prompt's history `status.messages`, as ComfyUI does.
HISTORY_MESSAGE_TYPES = frozenset({"execution_start", "execution_cached", "execution_success", "execution_error",
                                   "execution_interrupted"})
