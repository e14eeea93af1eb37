"""Start-up time of `python main.py`: first HTTP answer, first /object_info, first finished image.

Starts the server as a subprocess N times (a fresh working folder each time, the shipped models)
and measures, from the moment the process is spawned:

1. the first HTTP response of `GET /` (the canvas page: what a user waits for in the browser);
2. the first 200 of `GET /object_info` (the node registry is built: the canvas can draw nodes);
3. the first finished generation of the default workflow (workflows/default.json), posted as
   soon as `/` answers, so a slow registry or model load shows up here, not hidden.

Prints each run and the medians. `--baseline DIR` names another checkout (e.g. one made with
`git archive <commit> | tar -x -C DIR`): its main.py is measured in alternation with this one,
each on its own models, so machine noise hits both alike, and the medians are printed side by side.
Run: `python benchmarks/startup.py --runs 5 [--baseline DIR]`.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
WORKFLOW = PROJECT / "workflows" / "default.json"
POLL_SECONDS = 0.01
# Loopback only: never send benchmark traffic through a proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class StartupTimes:
    first_page: float
    object_info: float
    first_image: float


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _status(url: str, body: bytes | None = None) -> tuple[int, bytes] | None:
    """(status, body) of one request, or None while nothing listens yet."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"} if body else {})
    try:
        with OPENER.open(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, ConnectionError, OSError):
        return None


def _wait_for(process: subprocess.Popen, url: str, want_ok: bool, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        answer = _status(url)
        if answer is not None and (not want_ok or answer[0] == 200):
            return time.monotonic()
        time.sleep(POLL_SECONDS)
    raise TimeoutError(f"no answer from {url} within {timeout} s")


def measure_once(checkout: Path, extra_args: list[str], timeout: float) -> StartupTimes:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="flowmill-startup-") as workdir:
        command = [sys.executable, str(checkout / "main.py"), "--port", str(port),
                   "--models-dir", str(checkout / "models"), *extra_args]
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            first_page = _wait_for(process, base + "/", want_ok=False, timeout=timeout) - started
            prompt = json.dumps({"prompt": json.loads(WORKFLOW.read_text())}).encode()
            answer = _status(base + "/prompt", prompt)
            if answer is None or answer[0] != 200:
                raise RuntimeError(f"POST /prompt failed: {answer}")
            prompt_id = json.loads(answer[1])["prompt_id"]
            object_info = _wait_for(process, base + "/object_info", want_ok=True, timeout=timeout) - started
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                answer = _status(f"{base}/history/{prompt_id}")
                if answer is not None and answer[0] == 200 and prompt_id in json.loads(answer[1]):
                    entry = json.loads(answer[1])[prompt_id]
                    if entry["status"]["status_str"] != "success":
                        raise RuntimeError(f"the default workflow failed: {entry['status']}")
                    break
                time.sleep(0.05)
            else:
                raise TimeoutError("the default workflow did not finish")
            first_image = time.monotonic() - started
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return StartupTimes(first_page, object_info, first_image)


def _row(label: str, times: StartupTimes) -> str:
    return f"{label:<16} {times.first_page:>9.3f} {times.object_info:>13.3f} {times.first_image:>12.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--cpu", action="store_true", help="pass --cpu to the server")
    parser.add_argument("--baseline", type=Path, help="another checkout to measure in alternation with this one")
    options = parser.parse_args()
    extra = ["--cpu"] if options.cpu else []
    checkouts = {"this checkout": PROJECT}
    if options.baseline is not None:
        checkouts["baseline"] = options.baseline.resolve()
    runs: dict[str, list[StartupTimes]] = {label: [] for label in checkouts}
    print(f"{'run':<16} {'GET /':>9} {'/object_info':>13} {'first image':>12}  (seconds from spawn)")
    for index in range(options.runs):
        for label, checkout in checkouts.items():
            times = measure_once(checkout, extra, options.timeout)
            runs[label].append(times)
            print(_row(f"{index + 1} {label}", times), flush=True)
    for label, measured in runs.items():
        median = StartupTimes(*(statistics.median(getattr(t, field) for t in measured)
                                for field in ("first_page", "object_info", "first_image")))
        print(_row(f"median {label}", median))


if __name__ == "__main__":
    main()
