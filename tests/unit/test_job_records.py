"""Job objects from queue items and history entries (server/job_records.py), case by case.

The rules are ComfyUI's (`comfy_execution/jobs.py`): which outputs count, which one becomes the
preview, how a history status maps to a job status, what a detailed job adds.
"""

from __future__ import annotations

from typing import Any

from server.job_records import (
    history_job,
    normalised_outputs,
    outputs_summary,
    previewable_count,
    queue_job,
    sorted_jobs,
)


def _entry(status_str: str, messages: list[Any], outputs: dict[str, Any] | None = None) -> dict[str, Any]:
    extra = {"create_time": 1000, "extra_pnginfo": {"workflow": {"id": "wf"}}}
    return {"prompt": [7, "p1", {"1": {}}, extra, ["1"]], "outputs": outputs or {},
            "status": {"status_str": status_str, "completed": status_str == "success", "messages": messages},
            "meta": {}}


def test_counts_every_file_and_previews_a_saved_one_first() -> None:
    outputs = {"9": {"images": [{"filename": "t.png", "type": "temp", "subfolder": ""}]},
               "3": {"images": [{"filename": "a.png", "type": "output", "subfolder": "x"},
                                {"filename": "b.png", "type": "output", "subfolder": "x"}],
                     "animated": [True], "count": 3}}
    count, preview = outputs_summary(outputs)
    assert count == 3
    assert preview == {"filename": "a.png", "type": "output", "subfolder": "x", "nodeId": "3", "mediaType": "images"}


def test_a_temp_image_is_the_preview_when_nothing_was_saved() -> None:
    count, preview = outputs_summary({"2": {"images": [{"filename": "t1.png", "type": "temp"},
                                                       {"filename": "t2.png", "type": "temp"}]}})
    assert count == 2 and preview["filename"] == "t1.png"


def test_files_that_cannot_be_shown_count_but_never_preview() -> None:
    outputs = {"1": {"latents": [{"filename": "a.latent", "type": "output"}]}}
    assert outputs_summary(outputs) == (1, None)
    assert previewable_count(outputs) == 0


def test_media_by_mime_type_and_3d_files_by_extension_are_previewable() -> None:
    assert outputs_summary({"1": {"files": [{"filename": "c.bin", "format": "video/webm", "type": "output"}]}})[1]
    count, preview = outputs_summary({"5": {"result": ["mesh.glb", None, "notes"]}})
    assert count == 1
    assert preview == {"filename": "mesh.glb", "type": "output", "subfolder": "", "mediaType": "3d", "nodeId": "5"}


def test_text_is_a_preview_of_last_resort_and_never_counted() -> None:
    only_text = {"1": {"text": ["x" * 2000]}}
    count, preview = outputs_summary(only_text)
    assert count == 0
    assert preview == {"content": "x" * 1024, "truncated": True, "nodeId": "1", "mediaType": "text"}
    with_file = {"1": {"text": ["t"], "files": [{"filename": "n.txt", "type": "output"}]},
                 "2": {"images": [{"filename": "p.png", "type": "temp"}]}}
    count, preview = outputs_summary(with_file)
    assert count == 2 and preview["filename"] == "p.png"  # any image beats a text file
    count, preview = outputs_summary({"1": {"text": ["t"], "files": [{"filename": "n.txt", "type": "output"}]}})
    assert preview["filename"] == "n.txt" and preview["mediaType"] == "files"


def test_outputs_drop_nones_and_describe_3d_names() -> None:
    assert normalised_outputs({"1": {"result": ["m.obj", None, "plain"], "animated": [False]}, "2": "odd"}) == {
        "1": {"result": [{"filename": "m.obj", "type": "output", "subfolder": "", "mediaType": "3d"}, "plain"],
              "animated": [False]},
        "2": "odd"}


def test_history_statuses_map_to_job_statuses() -> None:
    start = ["execution_start", {"timestamp": 1100}]
    assert history_job("p1", _entry("success", [start, ["execution_success", {"timestamp": 1500}]]))["status"] == (
        "completed")
    failed = history_job("p1", _entry("error", [start, ["execution_error", {"timestamp": 1400, "node_id": "2"}]]))
    assert failed["status"] == "failed" and failed["execution_error"] == {"timestamp": 1400, "node_id": "2"}
    assert failed["execution_end_time"] == 1400 and failed["execution_start_time"] == 1100
    interrupted = history_job("p1", _entry("error", [start, ["execution_interrupted", {"timestamp": 1300}]]))
    assert interrupted["status"] == "cancelled" and "execution_error" not in interrupted


def test_a_job_leaves_out_what_it_does_not_know_and_details_add_the_workflow() -> None:
    job = history_job("p1", _entry("success", []))
    assert job == {"id": "p1", "status": "completed", "priority": 7, "create_time": 1000, "outputs_count": 0,
                   "previewable_outputs_count": 0, "workflow_id": "wf"}
    detailed = history_job("p1", _entry("success", []), "success", detailed=True)
    assert detailed["state"] == "success" and detailed["outputs"] == {}
    assert detailed["workflow"] == {"prompt": {"1": {}}, "extra_data": {"create_time": 1000,
                                                                         "extra_pnginfo": {"workflow": {"id": "wf"}}}}
    assert detailed["execution_status"]["status_str"] == "success"
    queued = queue_job([3, "q", {}, {"create_time": 5}, []], "pending", "pending")
    assert queued == {"id": "q", "status": "pending", "priority": 3, "create_time": 5, "outputs_count": 0,
                      "previewable_outputs_count": 0, "state": "pending"}


def test_sorting_is_by_creation_or_duration_and_stable() -> None:
    jobs = [{"id": "a", "create_time": 2}, {"id": "b", "create_time": 1},
            {"id": "c", "create_time": 2, "execution_start_time": 10, "execution_end_time": 40},
            {"id": "d", "execution_start_time": 10, "execution_end_time": 20}]
    assert [job["id"] for job in sorted_jobs(jobs, "created_at", "desc")] == ["a", "c", "b", "d"]
    assert [job["id"] for job in sorted_jobs(jobs, "created_at", "asc")] == ["d", "b", "a", "c"]
    assert [job["id"] for job in sorted_jobs(jobs, "execution_duration", "desc")] == ["c", "d", "a", "b"]
