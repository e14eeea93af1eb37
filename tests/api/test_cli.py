"""The command line: `main.py run` and `main.py submit` end to end, the bind refusal, the benchmark smoke.

`run` is exercised as a real subprocess for the happy paths (API, UI and PNG workflows) and
in-process through `main.main` for the error paths, which is faster and equally faithful to
the exit codes. `submit` talks to a real server subprocess on 127.0.0.1 started here; every
process a test starts is stopped by that test.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.api.server_process import ServerProcess, free_port

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "main.py"
TOKEN = "cli-test-token-0123456789abcdef"


# --------------------------------------------------------------------------- workflows


def api_workflow(color: int = 0x000000, prefix: str = "api") -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color},
              "_meta": {"title": "Canvas"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}, "_meta": {"title": "Flip"}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix},
              "_meta": {"title": "Keep"}},
    }


def ui_workflow(color: int = 0x000000, prefix: str = "ui") -> dict[str, Any]:
    """A LiteGraph v0.4 canvas file: EmptyImage -> ImageInvert -> SaveImage, positional widgets."""
    def node(node_id: int, kind: str, inputs: list, links: list[int], widgets: list, title: str | None) -> dict:
        entry = {"id": node_id, "type": kind, "pos": [node_id * 250, 0], "size": [220, 120], "flags": {},
                 "order": node_id - 1, "mode": 0, "inputs": inputs, "properties": {"Node name for S&R": kind},
                 "widgets_values": widgets,
                 "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": links, "slot_index": 0}] if links else []}
        return {**entry, "title": title} if title else entry

    return {
        "last_node_id": 3, "last_link_id": 2, "version": 0.4, "groups": [], "config": {}, "extra": {},
        "nodes": [
            node(1, "EmptyImage", [], [1], [8, 8, 1, color], "Canvas"),
            node(2, "ImageInvert", [{"name": "image", "type": "IMAGE", "link": 1}], [2], [], None),
            node(3, "SaveImage", [{"name": "images", "type": "IMAGE", "link": 2}], [], [prefix], "Keep"),
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]],
    }


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def inverted(color: int) -> tuple[int, int, int]:
    return (255 - (color >> 16 & 0xFF), 255 - (color >> 8 & 0xFF), 255 - (color & 0xFF))


def read_png(path: Path) -> tuple[tuple[int, int, int], dict[str, str]]:
    with Image.open(io.BytesIO(path.read_bytes())) as image:
        image.load()
        return image.convert("RGB").getpixel((0, 0)), dict(image.text)


def cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(MAIN), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=environment)


# --------------------------------------------------------------------------- run: happy paths


def test_run_api_workflow_with_overrides_by_id_and_title(tmp_path: Path) -> None:
    workflow = write_json(tmp_path / "api.json", api_workflow())
    out = tmp_path / "renders"
    result = cli("run", str(workflow), "--set", "Canvas.color=16711680", "--set", "3.filename_prefix=cli/api",
                 "--out", str(out), "--cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    saved = out / "cli" / "api_00001_.png"
    assert saved.is_file() and str(saved) in result.stdout
    pixel, chunks = read_png(saved)
    assert pixel == inverted(0xFF0000)
    prompt = json.loads(chunks["prompt"])
    assert prompt["1"]["inputs"]["color"] == 0xFF0000 and prompt["3"]["inputs"]["filename_prefix"] == "cli/api"
    assert "workflow" not in chunks  # an API file has no canvas to embed
    assert "EmptyImage" in result.stderr and "ImageInvert" in result.stderr and "done in" in result.stderr


def test_run_ui_workflow_embeds_it_and_runs_again_from_the_png(tmp_path: Path) -> None:
    canvas = ui_workflow()
    workflow = write_json(tmp_path / "ui.json", canvas)
    out = tmp_path / "out"
    result = cli("run", str(workflow), "--set", "Canvas.color=255", "--set", "2.image=[\"1\", 0]",
                 "--out", str(out), "--cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    pixel, chunks = read_png(out / "ui_00001_.png")
    assert pixel == inverted(0x0000FF)
    assert json.loads(chunks["workflow"]) == canvas
    assert json.loads(chunks["prompt"])["1"]["inputs"]["color"] == 255
    # The PNG is a workflow file too: its `workflow` chunk is preferred and converted again.
    again = cli("run", str(out / "ui_00001_.png"), "--set", "Keep.filename_prefix=again", "--out", str(out),
                "--cpu", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    pixel, chunks = read_png(out / "again_00001_.png")
    assert pixel == inverted(0x000000) and json.loads(chunks["workflow"]) == canvas


# --------------------------------------------------------------------------- run: errors (in-process)


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the runtime's default folders live under the working directory
    return tmp_path


def run_main(*args: str) -> int:
    import main

    return main.main(list(args))


def test_unknown_override_node_exits_1_naming_it(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workflow = write_json(in_tmp / "api.json", api_workflow())
    assert run_main("run", str(workflow), "--set", "Nowhere.color=1", "--cpu") == 1
    error = capsys.readouterr().err
    assert "'Nowhere'" in error and "Canvas" in error  # names the bad node and lists the real ones


def test_ambiguous_title_and_unknown_input_exit_1(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompt = api_workflow()
    prompt["2"]["_meta"]["title"] = "Canvas"
    workflow = write_json(in_tmp / "api.json", prompt)
    assert run_main("run", str(workflow), "--set", "Canvas.color=1", "--cpu") == 1
    assert "ambiguous" in capsys.readouterr().err
    workflow = write_json(in_tmp / "api.json", api_workflow())
    assert run_main("run", str(workflow), "--set", "Canvas.colour=1", "--cpu") == 1
    error = capsys.readouterr().err
    assert "node 1 (EmptyImage)" in error and "'colour'" in error and "color" in error


def test_invalid_workflow_exits_1_with_the_validation_error(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workflow = write_json(in_tmp / "api.json", api_workflow())
    assert run_main("run", str(workflow), "--set", "1.width=0", "--set", "Canvas.color=\"red\"", "--cpu") == 1
    error = capsys.readouterr().err
    assert "Prompt outputs failed validation" in error
    assert "node 1 (EmptyImage, \"Canvas\"): input 'width'" in error and "smaller than min" in error
    assert "input 'color'" in error and "expected INT" in error and "received \"red\"" in error


def test_execution_error_exits_1_naming_the_node(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 2, "color": 0}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 3, "color": 0}},
        "3": {"class_type": "ImageBlend", "inputs": {"image1": ["1", 0], "image2": ["2", 0], "blend_factor": 0.5,
                                                     "blend_mode": "normal"}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "never"}},
    }
    assert run_main("run", str(write_json(in_tmp / "bad.json", prompt)), "--cpu") == 1
    error = capsys.readouterr().err
    assert "error in #3 ImageBlend" in error and "batch of 2" in error


def test_usage_errors_exit_2(in_tmp: Path) -> None:
    with pytest.raises(SystemExit) as missing:
        run_main("run", str(in_tmp / "missing.json"))
    with pytest.raises(SystemExit) as malformed:
        run_main("run", "x.json", "--set", "no-equals-sign")
    assert missing.value.code == 2 and malformed.value.code == 2


def test_not_a_workflow_exits_1(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main("run", str(write_json(in_tmp / "list.json", [1, 2, 3])), "--cpu") == 1
    assert "not a workflow" in capsys.readouterr().err


# --------------------------------------------------------------------------- overrides and printer (unit)


def test_override_values_are_json_when_they_parse() -> None:
    from engine.headless import apply_overrides

    prompt = api_workflow()
    changed = apply_overrides(prompt, ["1.color=7", "Keep.filename_prefix=a=b", "Flip.image=[\"1\", 0]",
                                       "3.filename_prefix=\"123\""])
    assert changed["1"]["inputs"]["color"] == 7
    assert changed["3"]["inputs"]["filename_prefix"] == "123"  # later overrides win; quoted JSON stays a string
    assert prompt["1"]["inputs"]["color"] == 0  # the original is untouched


def test_terminal_progress_prints_plain_lines_without_a_tty() -> None:
    from engine.events import ExecutionFailed, NodeProgress, NodesCached, NodeStarted
    from engine.headless import TerminalProgress

    stream = io.StringIO()
    printer = TerminalProgress(stream, api_workflow())
    printer(NodesCached("p", ["1"]))
    printer(NodeStarted("p", "2", "2"))
    for step in range(1, 101):
        printer(NodeProgress("p", "2", "2", step, 100))
    printer(ExecutionFailed("p", "2", "ImageInvert", ["1"], "boom", "ValueError", ["Traceback line\n"]))
    lines = stream.getvalue().splitlines()
    assert "1 node(s) served from the cache" in lines and '[1] #2 ImageInvert "Flip"' in lines
    assert "\r" not in stream.getvalue() and 5 <= sum("100" in line for line in lines) <= 12
    assert any("ValueError: boom" in line for line in lines) and "    Traceback line" in lines


# --------------------------------------------------------------------------- submit


def _running_server(workdir: Path, token: str | None = None) -> Iterator[ServerProcess]:
    """A real server in `workdir` with no custom nodes; stopped afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "custom_nodes").mkdir(exist_ok=True)
    running = ServerProcess(workdir, custom_nodes=workdir / "custom_nodes", token=token).start(timeout=90)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from _running_server(tmp_path_factory.mktemp("server"))


def test_submit_ui_workflow_downloads_the_png(server: ServerProcess, tmp_path: Path) -> None:
    canvas = ui_workflow(prefix="submitted")
    workflow = write_json(tmp_path / "ui.json", canvas)
    out = tmp_path / "downloads"
    # In a fresh interpreter that records whether torch was imported: submit must not import it.
    code = ("import sys, main; rc = main.main(sys.argv[1:]); "
            "sys.exit(rc if 'torch' not in sys.modules else 99)")
    result = subprocess.run(
        [sys.executable, "-c", code, "submit", str(workflow), "--server", server.url, "--out", str(out),
         "--set", "Canvas.color=65280", "--set", "3.filename_prefix=sub/mitted"],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, (result.returncode, result.stderr)
    saved = out / "sub" / "mitted_00001_.png"
    assert saved.is_file() and str(saved) in result.stdout
    pixel, chunks = read_png(saved)
    assert pixel == inverted(0x00FF00) and json.loads(chunks["workflow"]) == canvas
    assert json.loads(chunks["prompt"])["1"]["inputs"]["color"] == 0x00FF00
    assert "[1] #1 EmptyImage" in result.stderr and "done in" in result.stderr
    again = cli("submit", str(saved), "--server", server.url, "--out", str(out), "--set", "Keep.filename_prefix=png",
                cwd=tmp_path, timeout=60)  # a PNG is a workflow file: its workflow chunk is sent again
    assert again.returncode == 0, again.stderr
    assert read_png(out / "png_00001_.png")[0] == inverted(0x000000)


def test_submit_invalid_workflow_prints_the_server_error(server: ServerProcess, tmp_path: Path) -> None:
    workflow = write_json(tmp_path / "api.json", api_workflow())
    result = cli("submit", str(workflow), "--server", server.url, "--set", "Canvas.width=-3",
                 "--out", str(tmp_path), cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    assert "node 1 (EmptyImage, \"Canvas\"): input 'width'" in result.stderr and "smaller than min" in result.stderr


def test_submit_with_a_token(tmp_path: Path) -> None:
    servers = _running_server(tmp_path / "server", token=TOKEN)
    running = next(servers)
    try:
        workflow = write_json(tmp_path / "api.json", api_workflow(prefix="tok"))
        denied = cli("submit", str(workflow), "--server", running.url, "--out", str(tmp_path), cwd=tmp_path)
        assert denied.returncode == 2 and "401" in denied.stderr
        allowed = cli("submit", str(workflow), "--server", running.url, "--token", TOKEN, "--out",
                      str(tmp_path / "dl"), cwd=tmp_path)
        assert allowed.returncode == 0, allowed.stderr
        assert (tmp_path / "dl" / "tok_00001_.png").is_file()
    finally:
        servers.close()


def test_submit_to_nothing_exits_with_a_message(tmp_path: Path) -> None:
    workflow = write_json(tmp_path / "api.json", api_workflow())
    result = cli("submit", str(workflow), "--server", f"http://127.0.0.1:{free_port()}", cwd=tmp_path)
    assert result.returncode == 2 and "cannot reach" in result.stderr


# --------------------------------------------------------------------------- serve refusal, benchmark


def test_listening_on_all_interfaces_without_a_token_is_refused(tmp_path: Path) -> None:
    started = time.monotonic()
    result = cli("--listen", "0.0.0.0", "--port", str(free_port()), cwd=tmp_path, timeout=5)
    assert result.returncode != 0 and time.monotonic() - started < 5
    assert "refusing to listen on 0.0.0.0" in result.stderr


def test_benchmark_quick_prints_its_table(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "executor.py"), "--quick"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.split()[:1] in (["100"], ["1000"])]
    assert len(rows) == 12 and {row[2] for row in rows} == {"chain", "fan"}
    assert {row[3] for row in rows} == {"cold", "requeue", "changed"}
    assert "scaling exponent" in result.stdout
    assert any(line.startswith(("PASS", "MISS")) and "re-queue" in line for line in result.stdout.splitlines())
