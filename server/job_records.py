"""Prompts as ComfyUI's job objects (`GET /api/jobs`), built from queue items and history entries.

ComfyUI's jobs API (`comfy_execution/jobs.py`) gives every prompt one flat record: `id`,
`status` (pending, in_progress, completed, failed, cancelled), `priority` (the queue
number), `create_time`, `execution_start_time` / `execution_end_time` (from the history
messages' timestamps), `execution_error`, `outputs_count`, `previewable_outputs_count`,
`preview_output` and `workflow_id`, with fields that have no value left out. A single-job
lookup adds `outputs`, `execution_status` and `workflow` (`{prompt, extra_data}`). This module
rebuilds those records from Flowmill's store; the behaviour follows ComfyUI's, the code is
Flowmill's own.

Flowmill adds one field, `state`: its own finer state (pending, running, success, error,
interrupted, cancelled), which `GET /jobs/{id}` reported before the jobs API existed.

Pure functions over plain data: no aiohttp, no store, no module-level mutable state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

PENDING, IN_PROGRESS, COMPLETED, FAILED, CANCELLED = "pending", "in_progress", "completed", "failed", "cancelled"
JOB_STATUSES = (PENDING, IN_PROGRESS, COMPLETED, FAILED, CANCELLED)
HISTORY_STATUSES = frozenset({COMPLETED, FAILED, CANCELLED})
SORT_FIELDS = ("created_at", "execution_duration")

# What ComfyUI's frontend can preview, by media key, MIME prefix or file extension.
_PREVIEW_MEDIA = frozenset({"images", "video", "audio", "3d", "text"})
_PREVIEW_MIME_PREFIXES = ("video/", "audio/")
_MODEL_EXTENSIONS = (".obj", ".fbx", ".gltf", ".glb", ".usdz")
_TEXT_EXTENSIONS = (".txt", ".md", ".json")
_TEXT_PREVIEW_LIMIT = 1024  # characters of raw text kept in a preview
_END_EVENTS = frozenset({"execution_success", "execution_error", "execution_interrupted"})


def _present(fields: Mapping[str, Any]) -> dict[str, Any]:
    """ComfyUI leaves fields without a value out of a job object rather than sending null."""
    return {key: value for key, value in fields.items() if value is not None}


def _metadata(extra_data: Mapping[str, Any]) -> tuple[Any, Any]:
    """(create_time, workflow_id) from a prompt's extra_data."""
    pnginfo = extra_data.get("extra_pnginfo")
    workflow = pnginfo.get("workflow") if isinstance(pnginfo, Mapping) else None
    return extra_data.get("create_time"), workflow.get("id") if isinstance(workflow, Mapping) else None


# --- outputs -----------------------------------------------------------------------------------


def _file_item(item: Any) -> dict[str, Any] | None:
    """An output list entry as a file dict: dicts as they are, a 3D file name as a dict, else None."""
    if isinstance(item, dict):
        return item
    if isinstance(item, str) and item.lower().endswith(_MODEL_EXTENSIONS):
        return {"filename": item, "type": "output", "subfolder": "", "mediaType": "3d"}
    return None


def _entries(outputs: Mapping[str, Any]) -> Iterable[tuple[str, str, Any]]:
    """(node id, media key, item) for every item of every output list ('animated' is a flag)."""
    for node_id, node_outputs in outputs.items():
        if not isinstance(node_outputs, Mapping):
            continue
        for media, items in node_outputs.items():
            if media == "animated" or not isinstance(items, list):
                continue
            for item in items:
                yield str(node_id), str(media), item


def _previewable(media: str, item: Mapping[str, Any]) -> bool:
    if media in _PREVIEW_MEDIA:
        return True
    if str(item.get("format") or "").startswith(_PREVIEW_MIME_PREFIXES):
        return True
    return str(item.get("filename") or "").lower().endswith(_MODEL_EXTENSIONS + _TEXT_EXTENSIONS)


def _is_text(media: str, item: Mapping[str, Any]) -> bool:
    return media == "text" or str(item.get("filename") or "").lower().endswith(_TEXT_EXTENSIONS)


def _text_preview(node_id: str, item: Any) -> dict[str, Any]:
    text = str(item[0] if isinstance(item, (tuple, list)) and item else item)
    preview: dict[str, Any] = {"content": text[:_TEXT_PREVIEW_LIMIT]}
    if len(text) > _TEXT_PREVIEW_LIMIT:
        preview["truncated"] = True
    return {**preview, "nodeId": node_id, "mediaType": "text"}


def outputs_summary(outputs: Mapping[str, Any]) -> tuple[int, dict[str, Any] | None]:
    """(outputs_count, preview_output), as ComfyUI ranks previews.

    Every file entry counts; raw text strings are preview-only metadata and do not. The
    preview is the first saved (type "output") visual file, else the first other visual
    file (a temp preview), else the first saved text file, else the first raw text.
    """
    count = 0
    ranked: dict[str, dict[str, Any]] = {}
    for node_id, media, raw in _entries(outputs):
        item = _file_item(raw)
        if item is None:
            if media == "text" and raw is not None:
                ranked.setdefault("text", _text_preview(node_id, raw))
            continue
        count += 1
        if not _previewable(media, item):
            continue
        enriched = {**item, "nodeId": node_id, "mediaType": item.get("mediaType", media)}
        rank = "text_file" if _is_text(media, item) else "saved" if item.get("type") == "output" else "other"
        ranked.setdefault(rank, enriched)
    preview = next((ranked[rank] for rank in ("saved", "other", "text_file", "text") if rank in ranked), None)
    return count, preview


def previewable_count(outputs: Mapping[str, Any]) -> int:
    """How many outputs the frontend can show (images, video, audio, 3D, text files)."""
    return sum(1 for _, media, raw in _entries(outputs)
               if (item := _file_item(raw)) is not None and _previewable(media, item))


def normalised_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """The `outputs` of a job: None entries dropped, 3D file names turned into file dicts."""
    result: dict[str, Any] = {}
    for node_id, node_outputs in outputs.items():
        if not isinstance(node_outputs, Mapping):
            result[node_id] = node_outputs
            continue
        result[node_id] = {
            media: items if media == "animated" or not isinstance(items, list)
            else [_file_item(item) or item for item in items if item is not None]
            for media, items in node_outputs.items()
        }
    return result


# --- jobs ----------------------------------------------------------------------------------------


def queue_job(item: Sequence[Any], status: str, state: str, *, detailed: bool = False) -> dict[str, Any]:
    """A pending, running or cancelled-while-pending prompt from its ComfyUI queue tuple."""
    number, prompt_id, prompt, extra_data, _ = item
    create_time, workflow_id = _metadata(extra_data)
    job = _present({"id": prompt_id, "status": status, "priority": number, "create_time": create_time,
                    "outputs_count": 0, "previewable_outputs_count": 0, "workflow_id": workflow_id, "state": state})
    if detailed:
        job["workflow"] = {"prompt": prompt, "extra_data": extra_data}
    return job


def _execution_times(messages: Iterable[Any]) -> tuple[Any, Any, Any, bool]:
    """(start time, end time, error message data, interrupted) from history status messages."""
    start = end = error = None
    interrupted = False
    for entry in messages:
        if not isinstance(entry, (list, tuple)) or len(entry) < 2 or not isinstance(entry[1], Mapping):
            continue
        event, data = entry[0], entry[1]
        if event == "execution_start":
            start = data.get("timestamp")
        elif event in _END_EVENTS:
            end = data.get("timestamp")
            error = data if event == "execution_error" else error
            interrupted = interrupted or event == "execution_interrupted"
    return start, end, error, interrupted


def history_job(prompt_id: str, entry: Mapping[str, Any], state: str | None = None, *,
                detailed: bool = False) -> dict[str, Any]:
    """A finished prompt from its `GET /history` entry.

    "success" is completed; "error" is failed, or cancelled when the run was interrupted
    (ComfyUI records an interrupt as an error with an `execution_interrupted` message).
    """
    number, _, prompt, extra_data, _ = entry["prompt"]
    create_time, workflow_id = _metadata(extra_data)
    status_info = entry.get("status") or {}
    start, end, error, interrupted = _execution_times(status_info.get("messages") or [])
    status = COMPLETED
    if status_info.get("status_str") == "error":
        status = CANCELLED if interrupted else FAILED
    outputs = entry.get("outputs") or {}
    count, preview = outputs_summary(outputs)
    job = _present({"id": prompt_id, "status": status, "priority": number, "create_time": create_time,
                    "execution_start_time": start, "execution_end_time": end, "execution_error": error,
                    "outputs_count": count, "previewable_outputs_count": previewable_count(outputs),
                    "preview_output": preview, "workflow_id": workflow_id, "state": state})
    if detailed:
        job["outputs"] = normalised_outputs(outputs)
        job["execution_status"] = status_info
        job["workflow"] = {"prompt": prompt, "extra_data": extra_data}
    return job


def sorted_jobs(jobs: list[dict[str, Any]], sort_by: str, sort_order: str) -> list[dict[str, Any]]:
    """By creation time (`created_at`) or run time (`execution_duration`, 0 when unknown); stable."""
    def duration(job: Mapping[str, Any]) -> float:
        start, end = job.get("execution_start_time"), job.get("execution_end_time")
        return end - start if start and end else 0

    def created(job: Mapping[str, Any]) -> float:
        return job.get("create_time") or 0

    return sorted(jobs, key=duration if sort_by == "execution_duration" else created, reverse=sort_order == "desc")
