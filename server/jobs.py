"""ComfyUI's jobs API: `GET /api/jobs`, `GET /api/jobs/{id}` and the cancel routes.

- `GET /jobs?status=&workflow_id=&sort_by=&sort_order=&limit=&offset=` lists running,
  pending and finished prompts as job objects (server/job_records.py), filtered by a
  comma-separated status list (pending, in_progress, completed, failed, cancelled), sorted by
  `created_at` (default) or `execution_duration`, `desc` (default) or `asc`, and paged. It
  answers `{"jobs": [...], "pagination": {offset, limit, total, has_more}}`; a bad parameter
  is a 400 `{"error": ...}` naming it, as in ComfyUI.
- `GET /jobs/{id}` answers one job with its outputs and workflow, or 404 `{"error": "Job not
  found"}`. Beyond ComfyUI, a prompt cancelled while pending is still found (status
  "cancelled"), and every job carries Flowmill's own `state`, which this route reported before.
- `POST /jobs/{id}/cancel` (idempotent: `{"cancelled": false}` for finished or unknown ids)
  and `POST /jobs/cancel {"job_ids": [...]}` remove pending prompts or interrupt the running one.

Like every route, these are also mounted under `/api` by the app factory. Store reads run on
the control pool, never on the loop.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server.appkeys import STORE, WORKER
from server.job_records import (
    CANCELLED,
    HISTORY_STATUSES,
    IN_PROGRESS,
    JOB_STATUSES,
    PENDING,
    SORT_FIELDS,
    history_job,
    queue_job,
    sorted_jobs,
)
from server.routes import broadcast_status, control, read_json
from server.store import ERROR, INTERRUPTED, RUNNING, SUCCESS, PromptStore

job_routes = web.RouteTableDef()
_QUEUE_STATUS = {PENDING: PENDING, RUNNING: IN_PROGRESS, CANCELLED: CANCELLED}


class JobQueryError(ValueError):
    """A query parameter of GET /jobs is malformed; the message is ComfyUI's 400 error text."""


def _bad(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


def _statuses(query: Any) -> list[str] | None:
    text = query.get("status")
    if not text:
        return None
    wanted = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [status for status in wanted if status not in JOB_STATUSES]
    if unknown:
        raise JobQueryError(f"Invalid status value(s): {', '.join(unknown)}. Valid values: {', '.join(JOB_STATUSES)}")
    return wanted


def _whole_number(query: Any, name: str) -> int | None:
    if name not in query:
        return None
    try:
        return int(query[name])
    except ValueError:
        raise JobQueryError(f"{name} must be an integer") from None


def _history_state(job: dict[str, Any]) -> str:
    """Flowmill's state of a finished prompt, read back from its ComfyUI status."""
    return {CANCELLED: INTERRUPTED, "completed": SUCCESS}.get(job["status"], ERROR)


def list_jobs(store: PromptStore, statuses: list[str] | None, workflow_id: str | None, sort_by: str,
              sort_order: str) -> list[dict[str, Any]]:
    """Every matching job, sorted (blocking: reads the store)."""
    wanted = set(statuses or JOB_STATUSES)
    running, pending = store.queue()
    jobs = [queue_job(item.as_comfy_tuple(), IN_PROGRESS, RUNNING) for item in running if IN_PROGRESS in wanted]
    jobs += [queue_job(item.as_comfy_tuple(), PENDING, PENDING) for item in pending if PENDING in wanted]
    if wanted & HISTORY_STATUSES:
        for prompt_id, entry in store.history().items():
            job = history_job(prompt_id, entry)
            if job["status"] in wanted:
                jobs.append({**job, "state": _history_state(job)})
    if workflow_id:
        jobs = [job for job in jobs if job.get("workflow_id") == workflow_id]
    return sorted_jobs(jobs, sort_by, sort_order)


def find_job(store: PromptStore, prompt_id: str) -> dict[str, Any] | None:
    """One job with its outputs and workflow, or None for an unknown id (blocking)."""
    record = store.record(prompt_id)
    if record is None:
        return None
    state, item, entry = record
    if entry is not None:
        return history_job(prompt_id, entry, state, detailed=True)
    return queue_job(item.as_comfy_tuple(), _QUEUE_STATUS[state], state, detailed=True)


@job_routes.get("/jobs")
async def get_jobs(request: web.Request) -> web.Response:
    query = request.rel_url.query
    sort_by = query.get("sort_by", "created_at").lower()
    sort_order = query.get("sort_order", "desc").lower()
    try:
        statuses = _statuses(query)
        if sort_by not in SORT_FIELDS:
            raise JobQueryError("sort_by must be 'created_at' or 'execution_duration'")
        if sort_order not in ("asc", "desc"):
            raise JobQueryError("sort_order must be 'asc' or 'desc'")
        limit = _whole_number(query, "limit")
        if limit is not None and limit <= 0:
            raise JobQueryError("limit must be a positive integer")
        offset = max(0, _whole_number(query, "offset") or 0)  # ComfyUI reads a negative offset as 0
    except JobQueryError as error:
        return _bad(str(error))
    jobs = await control(request, list_jobs, request.app[STORE], statuses, query.get("workflow_id"), sort_by,
                         sort_order)
    page = jobs[offset:] if limit is None else jobs[offset:offset + limit]
    return web.json_response({"jobs": page, "pagination": {"offset": offset, "limit": limit, "total": len(jobs),
                                                           "has_more": offset + len(page) < len(jobs)}})


@job_routes.get("/jobs/{prompt_id}")
async def get_job(request: web.Request) -> web.Response:
    prompt_id = request.match_info["prompt_id"]
    job = await control(request, find_job, request.app[STORE], prompt_id)
    if job is None:
        # ComfyUI's 404 body, plus the id and state Flowmill's own clients read.
        return web.json_response({"error": "Job not found", "id": prompt_id, "state": "not_found"}, status=404)
    return web.json_response(job)


async def _cancel(request: web.Request, prompt_id: str) -> bool:
    """Dequeue a pending prompt, else interrupt it if it is the one running; False for anything else."""
    dequeued = bool(await control(request, request.app[STORE].delete_pending, [prompt_id]))
    # A prompt the worker claimed after the dequeue missed it is running now: interrupt it.
    return dequeued or request.app[WORKER].interrupt(prompt_id)


@job_routes.post("/jobs/cancel")
async def cancel_jobs(request: web.Request) -> web.Response:
    """Best-effort batch cancel: `{"cancelled": true}` when at least one id was pending or running."""
    body = await read_json(request)
    job_ids = body.get("job_ids") if isinstance(body, dict) else None
    if not isinstance(job_ids, list):
        return _bad("job_ids must be a list")
    invalid = [job_id if isinstance(job_id, str) else repr(job_id) for job_id in job_ids
               if not isinstance(job_id, str) or not job_id]
    if invalid:
        return web.json_response({"error": "job_ids contains invalid id(s)", "invalid_ids": invalid}, status=400)
    cancelled = False
    for job_id in dict.fromkeys(job_ids):
        cancelled = await _cancel(request, job_id) or cancelled
    if cancelled:
        await broadcast_status(request.app)
    return web.json_response({"cancelled": cancelled})


@job_routes.post("/jobs/{prompt_id}/cancel")
async def cancel_job(request: web.Request) -> web.Response:
    """Idempotent cancel: removes a pending prompt or interrupts the running one."""
    cancelled = await _cancel(request, request.match_info["prompt_id"])
    if cancelled:
        await broadcast_status(request.app)
    return web.json_response({"cancelled": cancelled})
