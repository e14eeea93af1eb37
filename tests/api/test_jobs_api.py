"""ComfyUI's jobs API (GET /api/jobs, GET /api/jobs/{id}, the cancel routes) against the real store.

Prompts really run on the app's worker (stub nodes from tests/fixtures/stub_nodes.py); the
job objects are checked field by field against what ComfyUI's `comfy_execution/jobs.py`
defines and against the same prompts' /history entries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

WORKFLOW_ID = "0d1c2b3a-4f5e-4d6c-8b7a-112233445566"


def _save_graph(prefix: str = "jobs") -> dict[str, Any]:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}}


def _spin_graph(steps: int) -> dict[str, Any]:
    return {"1": {"class_type": "StubImage", "inputs": {"content": "WHITE", "height": 2, "width": 2,
                                                        "batch_size": 1}},
            "2": {"class_type": "StubSpin", "inputs": {"value": ["1", 0], "steps": steps}},
            "3": {"class_type": "StubOutput", "inputs": {"value": ["2", 0]}}}


def _failing_graph() -> dict[str, Any]:
    graph = _spin_graph(1)
    graph["2"] = {"class_type": "StubFail", "inputs": {"value": ["1", 0], "message": "kaput"}}
    return graph


async def _post(client: TestClient, graph: dict[str, Any], **extra: Any) -> dict[str, Any]:
    response = await client.post("/prompt", json={"prompt": graph, **extra})
    assert response.status == 200, await response.text()
    return await response.json()


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def _job(client: TestClient, prompt_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/jobs/{prompt_id}")
    assert response.status == 200, await response.text()
    return await response.json()


async def _settled(client: TestClient, prompt_id: str, status: str) -> dict[str, Any]:
    async def reached() -> bool:
        return (await _job(client, prompt_id))["status"] == status

    await _eventually(reached)
    return await _job(client, prompt_id)


async def _jobs(client: TestClient, query: str = "") -> dict[str, Any]:
    response = await client.get(f"/api/jobs{query}")
    assert response.status == 200, await response.text()
    return await response.json()


async def test_a_completed_job_carries_comfyuis_fields(client: TestClient) -> None:
    before = int(time.time() * 1000)
    workflow = {"id": WORKFLOW_ID, "nodes": [], "links": []}
    posted = await _post(client, _save_graph(), extra_data={"extra_pnginfo": {"workflow": workflow}})
    job = await _settled(client, posted["prompt_id"], "completed")
    history = (await (await client.get(f"/history/{posted['prompt_id']}")).json())[posted["prompt_id"]]

    assert job["id"] == posted["prompt_id"] and job["state"] == "success"
    assert job["priority"] == posted["number"]
    assert before <= job["create_time"] <= int(time.time() * 1000)
    assert job["create_time"] <= job["execution_start_time"] <= job["execution_end_time"]
    assert job["workflow_id"] == WORKFLOW_ID
    assert job["outputs_count"] == 2 and job["previewable_outputs_count"] == 2
    # The saved image wins the preview over the temp one, and is enriched with its node and media.
    saved = history["outputs"]["3"]["images"][0]
    assert job["preview_output"] == {**saved, "nodeId": "3", "mediaType": "images"}
    assert job["outputs"] == history["outputs"]
    assert job["execution_status"] == history["status"]
    assert job["workflow"] == {"prompt": history["prompt"][2], "extra_data": history["prompt"][3]}
    assert "execution_error" not in job  # fields without a value are left out, as ComfyUI does


async def test_failed_and_interrupted_jobs(client: TestClient) -> None:
    failed = (await _post(client, _failing_graph()))["prompt_id"]
    job = await _settled(client, failed, "failed")
    assert job["state"] == "error" and job["outputs_count"] == 0
    assert job["execution_error"]["node_id"] == "2" and "kaput" in job["execution_error"]["exception_message"]
    assert job["execution_start_time"] <= job["execution_end_time"]

    running = (await _post(client, _spin_graph(3000)))["prompt_id"]
    await _settled(client, running, "in_progress")
    await client.post("/interrupt", json={"prompt_id": running})
    job = await _settled(client, running, "cancelled")  # ComfyUI: an interrupted run is cancelled
    assert job["state"] == "interrupted" and job["execution_end_time"] >= job["execution_start_time"]


async def test_queued_jobs_and_the_cancel_routes(client: TestClient) -> None:
    running = (await _post(client, _spin_graph(3000)))["prompt_id"]
    pending = [(await _post(client, _spin_graph(1)))["prompt_id"] for _ in range(3)]
    await _settled(client, running, "in_progress")

    listed = await _jobs(client, "?status=pending,in_progress&sort_order=asc")
    assert [(job["id"], job["status"]) for job in listed["jobs"]] == (
        [(running, "in_progress")] + [(prompt_id, "pending") for prompt_id in pending])
    assert all(job["outputs_count"] == 0 and "workflow" not in job for job in listed["jobs"])
    detail = await _job(client, pending[0])
    assert detail["status"] == "pending" and detail["workflow"]["prompt"] == _spin_graph(1)

    cancel = await client.post(f"/api/jobs/{pending[0]}/cancel")
    assert await cancel.json() == {"cancelled": True}
    assert await (await client.post(f"/api/jobs/{pending[0]}/cancel")).json() == {"cancelled": False}
    cancelled = await _job(client, pending[0])  # beyond ComfyUI: still found, and says so
    assert cancelled["status"] == "cancelled" and cancelled["state"] == "cancelled"

    batch = await client.post("/api/jobs/cancel", json={"job_ids": [pending[1], pending[2], "never-seen"]})
    assert await batch.json() == {"cancelled": True}
    assert (await _jobs(client, "?status=pending"))["jobs"] == []
    assert await (await client.post("/api/jobs/cancel", json={"job_ids": ["never-seen"]})).json() == {
        "cancelled": False}

    assert await (await client.post("/api/jobs/cancel", json={"job_ids": [running]})).json() == {"cancelled": True}
    await _settled(client, running, "cancelled")


async def test_listing_filters_sorts_and_pages(client: TestClient) -> None:
    ids = []
    for index in range(5):
        extra = {"extra_data": {"extra_pnginfo": {"workflow": {"id": WORKFLOW_ID}}}} if index == 2 else {}
        prompt_id = (await _post(client, _save_graph(f"page{index}"), **extra))["prompt_id"]
        await _settled(client, prompt_id, "completed")
        ids.append(prompt_id)
        await asyncio.sleep(0.002)  # distinct create_time stamps (milliseconds)
    failed = (await _post(client, _failing_graph()))["prompt_id"]
    await _settled(client, failed, "failed")

    everything = await _jobs(client)
    assert [job["id"] for job in everything["jobs"]] == [failed, *reversed(ids)]  # newest first by default
    assert everything["pagination"] == {"offset": 0, "limit": None, "total": 6, "has_more": False}
    oldest_first = await _jobs(client, "?sort_order=asc")
    assert [job["id"] for job in oldest_first["jobs"]] == [*ids, failed]

    completed = await _jobs(client, "?status=completed")
    assert {job["id"] for job in completed["jobs"]} == set(ids)
    assert all(job["status"] == "completed" and "preview_output" in job for job in completed["jobs"])
    assert [job["id"] for job in (await _jobs(client, "?status=failed"))["jobs"]] == [failed]

    first = await _jobs(client, "?status=completed&limit=2&offset=0")
    second = await _jobs(client, "?status=completed&limit=2&offset=2")
    last = await _jobs(client, "?status=completed&limit=2&offset=4")
    assert [job["id"] for job in first["jobs"] + second["jobs"] + last["jobs"]] == list(reversed(ids))
    assert first["pagination"] == {"offset": 0, "limit": 2, "total": 5, "has_more": True}
    assert last["pagination"] == {"offset": 4, "limit": 2, "total": 5, "has_more": False}
    assert (await _jobs(client, "?offset=-3&limit=1"))["pagination"]["offset"] == 0  # as ComfyUI

    by_workflow = await _jobs(client, f"?workflow_id={WORKFLOW_ID}")
    assert [job["id"] for job in by_workflow["jobs"]] == [ids[2]]

    by_duration = await _jobs(client, "?sort_by=execution_duration&sort_order=desc")
    durations = [job["execution_end_time"] - job["execution_start_time"] for job in by_duration["jobs"]]
    assert durations == sorted(durations, reverse=True)


async def test_bad_parameters_are_400s_naming_them(client: TestClient) -> None:
    cases = {
        "?status=done": "Invalid status value(s): done",
        "?sort_by=name": "sort_by must be 'created_at' or 'execution_duration'",
        "?sort_order=up": "sort_order must be 'asc' or 'desc'",
        "?limit=0": "limit must be a positive integer",
        "?limit=ten": "limit must be an integer",
        "?offset=x": "offset must be an integer",
    }
    for query, message in cases.items():
        response = await client.get(f"/api/jobs{query}")
        assert response.status == 400, query
        assert message in (await response.json())["error"], query
    for body in ({"job_ids": "abc"}, {"ids": []}, [1]):
        response = await client.post("/api/jobs/cancel", json=body)
        assert response.status == 400 and (await response.json())["error"] == "job_ids must be a list"
    response = await client.post("/api/jobs/cancel", json={"job_ids": ["ok", 7, ""]})
    assert response.status == 400 and (await response.json())["invalid_ids"] == ["7", ""]


async def test_an_unknown_job_is_a_404(client: TestClient) -> None:
    for prefix in ("", "/api"):
        response = await client.get(f"{prefix}/jobs/nonexistent-job-id")
        assert response.status == 404
        assert await response.json() == {"error": "Job not found", "id": "nonexistent-job-id", "state": "not_found"}


async def test_cached_outputs_appear_in_a_job_without_a_client_id(client: TestClient) -> None:
    """ComfyUI's test_cached_outputs_in_job_without_client_id: a re-run served from the cache still
    lists its output nodes' outputs, though no websocket client saw them."""
    graph = _save_graph("cached")
    first = (await _post(client, graph, client_id="someone"))["prompt_id"]
    await _settled(client, first, "completed")
    again = (await _post(client, graph))["prompt_id"]
    job = await _settled(client, again, "completed")
    assert "3" in job["outputs"] and job["outputs"]["3"] == (await _job(client, first))["outputs"]["3"]
