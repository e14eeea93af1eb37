"""Executor scaling measured end to end: a real server subprocess, driven through /prompt and /ws only.

Graphs of N = 100, 1,000 and 10,000 cheap image nodes (8x8 pixels), in two shapes:

- chain: EmptyImage -> (N-2) x ImageInvert -> PreviewImage. Depth N.
- fan:   EmptyImage feeds k = (N-1)//2 leaf ImageBlend nodes, each blending the image with
         itself at its own factor (so every leaf has its own Merkle key: identical siblings
         would run once, as in ComfyUI); a balanced binary tree of k-1 ImageBlend nodes folds
         them into one image for a single PreviewImage. 2k+1 nodes (N-1 for even N), depth
         ~log2(k). Every node runs when cold, and only one 8x8 PNG is written per run.

Each shape is timed in three cases:

- cold:    POST /free empties the cache first, and the EmptyImage colour is new, so no node
           can be served from the cache: every node runs.
- requeue: the identical prompt again after a run of it: every node is a cache hit.
- changed: one widget differs from the previous run. Chain: the EmptyImage colour, so every
           node re-runs. Fan: the blend_factor of one leaf-level ImageBlend, so only that
           blend, its ~log2(k) ancestors and the PreviewImage re-run.

Time is from just before `POST /prompt` to the `executing {node: null}` message for that
prompt (validation, queueing, SQLite persistence, execution, websocket traffic and the
client's JSON parsing included), median of several repeats. The node bodies' own cost is
measured in-process once and subtracted: "overhead us/node" = (total - sum of the bodies of
the nodes that ran) / nodes in the graph, i.e. everything Flowmill adds around the node
functions, server and protocol included, not the executor alone.

The same cases are also run on an in-process `Executor` (validated first, events collected
in a list) and timed around `Executor.run`: "exec overhead" is that time minus the node
bodies, per node. The executor-overhead target (< 0.1 ms per node) is judged on it; the
end-to-end figure is printed beside it.

Run: `python benchmarks/executor.py` (full) or `--quick` (N = 100 and 1,000 only, for CI).
Only 127.0.0.1 is used, and only the server process started here is stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from anywhere: `python benchmarks/executor.py`

from server.client import ComfyClient, RunOutcome  # noqa: E402

HOST = "127.0.0.1"
SIZES, QUICK_SIZES = (100, 1_000, 10_000), (100, 1_000)
REPEATS = {100: 7, 1_000: 5, 10_000: 3}
CASES = ("cold", "requeue", "changed")
SHAPES = ("chain", "fan")
LINEAR_SLOPE_LIMIT = 1.15  # "linear": log-log slope at most this (fixed per-prompt costs pull it below 1)
OVERHEAD_LIMIT_US = 100.0
REQUEUE_1000_LIMIT_MS = 50.0
READY_TIMEOUT_S = 120.0
PROMPT_TIMEOUT_S = 600.0
Prompt = dict[str, dict[str, Any]]


# --------------------------------------------------------------------------- graphs


def _node(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs}


def chain(n: int, color: int) -> Prompt:
    """EmptyImage -> (n-2) ImageInvert -> PreviewImage: n nodes, depth n."""
    prompt: Prompt = {"1": _node("EmptyImage", width=8, height=8, batch_size=1, color=color)}
    for index in range(2, n):
        prompt[str(index)] = _node("ImageInvert", image=[str(index - 1), 0])
    prompt[str(n)] = _node("PreviewImage", images=[str(n - 1), 0])
    return prompt


def fan(n: int, color: int, leaf_factor: float = 0.5) -> tuple[Prompt, str]:
    """EmptyImage -> k distinct leaf blends -> ImageBlend tree -> PreviewImage; returns (prompt, first tree blend id).

    Each leaf blends the image with itself at its own factor, so every leaf has its own cache
    key: identical siblings would (rightly) run once and the fan would measure nothing.
    """
    leaves = max((n - 1) // 2, 2)
    prompt: Prompt = {"e": _node("EmptyImage", width=8, height=8, batch_size=1, color=color)}
    level = []
    for index in range(leaves):
        prompt[f"i{index}"] = _node("ImageBlend", image1=["e", 0], image2=["e", 0],
                                    blend_factor=round(index / leaves, 6), blend_mode="normal")
        level.append(f"i{index}")
    blends = 0
    while len(level) > 1:
        folded = []
        for left, right in zip(level[0::2], level[1::2], strict=False):  # odd one handled below
            blend_id = f"b{blends}"
            factor = leaf_factor if blends == 0 else 0.5
            prompt[blend_id] = _node("ImageBlend", image1=[left, 0], image2=[right, 0], blend_factor=factor,
                                     blend_mode="normal")
            folded.append(blend_id)
            blends += 1
        if len(level) % 2:
            folded.append(level[-1])  # the odd one out joins the next level
        level = folded
    prompt["out"] = _node("PreviewImage", images=[level[0], 0])
    return prompt, "b0"


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _wait_ready(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with opener.open(f"{url}/system_stats", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the server was not ready within {READY_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


@contextmanager
def running_server(work: Path, cache: str) -> Iterator[str]:
    """Start `main.py` on a free loopback port with its folders under `work`; stop only that process."""
    port = free_port()
    for name in ("input", "output", "models", "custom_nodes"):
        (work / name).mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(REPO / "main.py"), "serve", "--listen", HOST, "--port", str(port), "--cpu",
               "--input-dir", str(work / "input"), "--output-dir", str(work / "output"),
               "--models-dir", str(work / "models"), "--custom-nodes-dir", str(work / "custom_nodes"),
               "--cache", cache]
    log = work / "server.log"
    with log.open("wb") as sink:
        # cwd=work keeps the temp/ and user/ folders (previews, the SQLite queue) out of the repository.
        process = subprocess.Popen(command, cwd=work, stdout=sink, stderr=subprocess.STDOUT)
    try:
        url = f"http://{HOST}:{port}"
        _wait_ready(process, url, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


# --------------------------------------------------------------------------- node body cost


def body_costs_us() -> dict[str, float]:
    """Microseconds per call of each node function used here, called directly in-process."""
    import torch

    from engine.context import NodeContext
    from engine.paths import Folders
    from engine.registry import NodeRegistry

    registry = NodeRegistry()
    registry.discover("nodes")
    image = torch.rand(1, 8, 8, 3)
    with tempfile.TemporaryDirectory() as scratch:
        folders = Folders.under(Path(scratch))
        folders.create()
        context = NodeContext("out", "out", "bench", folders)
        calls: dict[str, tuple[int, Callable[[Callable[..., Any]], Any]]] = {
            "ImageInvert": (10_000, lambda run: run(image=image)),
            "ImageBlend": (10_000, lambda run: run(image1=image, image2=image, blend_factor=0.5,
                                                    blend_mode="normal")),
            "EmptyImage": (2_000, lambda run: run(width=8, height=8, batch_size=1, color=0x123456)),
            "PreviewImage": (300, lambda run: run(context, images=image)),
        }
        return {name: _time_calls(registry.get(name).make_hooks().run, count, call)
                for name, (count, call) in calls.items()}


def _time_calls(run: Callable[..., Any], count: int, call: Callable[[Callable[..., Any]], Any]) -> float:
    for _ in range(min(count // 10, 100)):
        call(run)  # warm-up: first calls pay for allocator and dispatcher caches
    started = time.perf_counter()
    for _ in range(count):
        call(run)
    return (time.perf_counter() - started) / count * 1e6


# --------------------------------------------------------------------------- measuring


@dataclass
class Row:
    n: int
    shape: str
    case: str
    nodes: int
    times_ms: list[float] = field(default_factory=list)
    executor_ms: list[float] = field(default_factory=list)  # the same case on an in-process Executor
    ran: int = 0
    body_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def per_node_us(self) -> float:
        return self.total_ms * 1000 / self.nodes

    @property
    def overhead_us(self) -> float:
        return (self.total_ms - self.body_ms) * 1000 / self.nodes

    @property
    def executor_overhead_us(self) -> float:
        """What the executor adds per node: its run time minus the node bodies, no HTTP or websocket."""
        return (statistics.median(self.executor_ms) - self.body_ms) * 1000 / self.nodes


class Bench:
    """Runs the cases for one shape and size against the server; keeps colours fresh."""

    def __init__(self, client: ComfyClient, costs: dict[str, float]) -> None:
        self.client = client
        self.costs = costs
        self.colour = 0x102030

    def fresh_colour(self) -> int:
        self.colour = (self.colour + 0x010101) % 0xFFFFFF
        return self.colour

    def build(self, shape: str, n: int, colour: int, factor: float = 0.5) -> tuple[Prompt, str]:
        return (chain(n, colour), "1") if shape == "chain" else fan(n, colour, factor)

    def timed(self, prompt: Prompt, row: Row) -> None:
        outcome = self.run(prompt)
        row.times_ms.append(outcome.elapsed_s * 1000)
        row.ran = len(set(outcome.executed))
        row.body_ms = sum(self.costs.get(prompt[node]["class_type"], 0.0) for node in set(outcome.executed)
                          if node in prompt) / 1000

    def run(self, prompt: Prompt) -> RunOutcome:
        outcome = self.client.run_prompt(prompt, timeout_s=PROMPT_TIMEOUT_S)
        if outcome.status != "success":
            raise RuntimeError(f"benchmark prompt failed: {json.dumps(outcome.failure)[:2000]}")
        return outcome

    def empty_cache(self) -> None:
        """POST /free, then wait for the worker to apply it (it does so before its next prompt)."""
        status, _ = self.client.post_json("/free", {"free_memory": True, "unload_models": True})
        if status != 200:
            raise RuntimeError(f"POST /free answered HTTP {status}")
        self.run(chain(3, self.fresh_colour()))  # untimed: keeps the free's gc.collect out of the timing

    def measure(self, shape: str, n: int) -> list[Row]:
        repeats = REPEATS[n]
        nodes = len(self.build(shape, n, 0)[0])
        rows = {case: Row(n, shape, case, nodes) for case in CASES}
        for _ in range(repeats):
            self.empty_cache()
            self.timed(self.build(shape, n, self.fresh_colour())[0], rows["cold"])
        prompt = self.build(shape, n, self.fresh_colour())[0]
        self.run(prompt)  # fill the cache with exactly this prompt
        for _ in range(repeats):
            self.timed(prompt, rows["requeue"])
        colour = self.colour
        for attempt in range(repeats):
            if shape == "chain":
                changed = self.build(shape, n, self.fresh_colour())[0]
            else:  # the same graph with one leaf blend's factor moved
                changed = self.build(shape, n, colour, round(0.3 + 0.01 * (attempt + 1), 2))[0]
            self.timed(changed, rows["changed"])
        return [rows[case] for case in CASES]


class InProcess:
    """The same cases on an `Executor` in this process: the executor's own cost, timed around `run`.

    Validation happens before the clock starts, as it does before a prompt reaches the
    executor in the server; events go to a list, as the worker's sink would receive them.
    """

    def __init__(self, scratch: Path) -> None:
        from engine.paths import Folders
        from engine.registry import NodeRegistry

        self.registry = NodeRegistry()
        self.registry.discover("nodes")
        self.folders = Folders.under(scratch)
        self.folders.create()
        self.colour = 0x203040

    def executor(self) -> Any:
        from engine.cache import OutputCache
        from engine.executor import Executor

        return Executor(self.registry, OutputCache(), self.folders)

    def timed(self, executor: Any, prompt: Prompt) -> float:
        from engine.executor import RunRequest
        from engine.validation import validate_prompt

        checked = validate_prompt(prompt, self.registry, folders=self.folders)
        events: list[Any] = []
        started = time.perf_counter()
        result = executor.run(RunRequest("bench", checked.prompt, checked.outputs), events.append)
        elapsed = (time.perf_counter() - started) * 1000
        if result.status != "success":
            raise RuntimeError(f"in-process benchmark prompt failed: {result.failure}")
        return elapsed

    def measure(self, bench: Bench, shape: str, n: int, rows: list[Row]) -> None:
        by_case = {row.case: row for row in rows}
        for _ in range(REPEATS[n]):
            self.colour += 1
            by_case["cold"].executor_ms.append(self.timed(self.executor(), bench.build(shape, n, self.colour)[0]))
        executor = self.executor()
        prompt = bench.build(shape, n, self.colour)[0]
        self.timed(executor, prompt)
        for _ in range(REPEATS[n]):
            by_case["requeue"].executor_ms.append(self.timed(executor, prompt))
        for attempt in range(REPEATS[n]):
            if shape == "chain":
                self.colour += 1
                changed = bench.build(shape, n, self.colour)[0]
            else:
                changed = bench.build(shape, n, self.colour, round(0.3 + 0.01 * (attempt + 1), 2))[0]
            by_case["changed"].executor_ms.append(self.timed(executor, changed))


# --------------------------------------------------------------------------- report


def slope(rows: list[Row], shape: str, case: str) -> float:
    chosen = sorted((row for row in rows if row.shape == shape and row.case == case), key=lambda row: row.n)
    low, high = chosen[0], chosen[-1]
    return math.log(high.total_ms / low.total_ms) / math.log(high.nodes / low.nodes)


def print_table(rows: list[Row], costs: dict[str, float]) -> None:
    print("node body cost, in-process (us per call): "
          + ", ".join(f"{name} {value:.1f}" for name, value in costs.items()))
    print()
    print("end to end = POST /prompt to `executing null` through a real server; executor = Executor.run in-process")
    header = f"{'N':>6} {'nodes':>6} {'shape':<6} {'case':<8} {'ran':>6} {'e2e ms':>9} {'min ms':>9} " \
             f"{'e2e us/node':>12} {'body ms':>8} {'e2e overhead':>13} {'executor ms':>12} {'exec overhead':>14}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row.n:>6} {row.nodes:>6} {row.shape:<6} {row.case:<8} {row.ran:>6} {row.total_ms:>9.1f} "
              f"{min(row.times_ms):>9.1f} {row.per_node_us:>12.1f} {row.body_ms:>8.1f} {row.overhead_us:>13.1f} "
              f"{statistics.median(row.executor_ms):>12.1f} {row.executor_overhead_us:>14.1f}")
    print("(overheads in us per node: time minus the node bodies, divided by the nodes in the graph)")
    print()
    sizes = sorted({row.n for row in rows})
    print(f"scaling exponent (log-log slope of total time, N={sizes[0]} -> N={sizes[-1]}):")
    for shape in SHAPES:
        print("  " + shape + ": " + ", ".join(f"{case} {slope(rows, shape, case):.2f}" for case in CASES))


def verdicts(rows: list[Row]) -> list[tuple[str, bool, str]]:
    largest = max(row.n for row in rows)
    results = []
    for shape in SHAPES:
        for case in CASES:
            value = slope(rows, shape, case)
            results.append((f"linear scaling, {shape}/{case} (slope <= {LINEAR_SLOPE_LIMIT})",
                            value <= LINEAR_SLOPE_LIMIT, f"slope {value:.2f}"))
    for row in (row for row in rows if row.n == largest):
        results.append((f"executor overhead < {OVERHEAD_LIMIT_US:.0f} us/node, {row.shape}/{row.case} N={row.n}",
                        row.executor_overhead_us < OVERHEAD_LIMIT_US, f"{row.executor_overhead_us:.1f} us/node "
                        f"(end to end through the server: {row.overhead_us:.1f})"))
    for row in (row for row in rows if row.n == 1_000 and row.case == "requeue"):
        results.append((f"unchanged 1,000-node re-queue < {REQUEUE_1000_LIMIT_MS:.0f} ms, {row.shape}",
                        row.total_ms < REQUEUE_1000_LIMIT_MS, f"{row.total_ms:.1f} ms"))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 100 and 1,000 only (CI smoke)")
    parser.add_argument("--cache", default="classic", help="the server's --cache policy")
    args = parser.parse_args(argv)
    sizes = QUICK_SIZES if args.quick else SIZES
    costs = body_costs_us()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="flowmill-bench-") as work, running_server(Path(work), args.cache) as url:
        with ComfyClient(url, timeout_s=PROMPT_TIMEOUT_S) as client:
            bench = Bench(client, costs)
            bench.run(chain(10, bench.fresh_colour()))  # warm-up: first-prompt imports and allocations
            in_process = InProcess(Path(work) / "in-process")
            for n in sizes:
                for shape in SHAPES:
                    measured = bench.measure(shape, n)
                    in_process.measure(bench, shape, n, measured)
                    rows.extend(measured)
                    print(f"measured {shape} N={n}", file=sys.stderr, flush=True)
    print(f"Flowmill executor benchmark: real server on {HOST}, --cpu, --cache {args.cache}; "
          f"median of {', '.join(f'{REPEATS[n]} (N={n})' for n in sizes)} repeats")
    print_table(rows, costs)
    print()
    for name, passed, detail in verdicts(rows):
        print(f"{'PASS' if passed else 'MISS'}  {name}: {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
