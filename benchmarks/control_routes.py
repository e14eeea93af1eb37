"""Control-route latency with and without heavy `/view` preview load, side by side.

Starts `python main.py` as a subprocess in a scratch folder holding a legal 9000x9000 PNG, then
measures GET /queue, /prompt, /history and /system_stats (one after another, `--samples` each):

1. idle;
2. while `--parallel` clients keep asking for `/view?...&preview=jpeg;Q` of that PNG. Each client
   asks for its own quality Q, so the preview cache cannot answer: every request is a full decode
   and JPEG encode, the load the audit measured (1.1-1.5 s per control request before the file
   work got its own pool).

Prints p50/p99 in milliseconds per route for both phases. Run: `python benchmarks/control_routes.py`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from tests.api.preview_load import PreviewLoad, percentile, timed_get, write_big_png  # noqa: E402
from tests.api.server_process import ServerProcess  # noqa: E402

ROUTES = ("/queue", "/prompt", "/history", "/system_stats")


def measure(base: str, samples: int) -> dict[str, list[float]]:
    return {route: [timed_get(base + route) for _ in range(samples)] for route in ROUTES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100, help="requests per route and phase")
    parser.add_argument("--parallel", type=int, default=8, help="concurrent preview clients")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flowmill-control-") as scratch:
        workdir = Path(scratch)
        name = write_big_png(workdir / "input")
        server = ServerProcess(workdir).start()
        try:
            idle = measure(server.url, options.samples)
            with PreviewLoad(server.url, name, options.parallel) as load:
                time.sleep(2.0)  # let every client have a conversion in flight
                loaded = measure(server.url, options.samples)
            print(f"{'route':<14} {'idle p50':>9} {'idle p99':>9} {'load p50':>9} {'load p99':>9}   (ms; "
                  f"{options.parallel} parallel 9000x9000 JPEG previews, {load.completed} served during the "
                  f"run, {load.errors} errors)")
            for route in ROUTES:
                row = [statistics.median(idle[route]), percentile(idle[route], 0.99),
                       statistics.median(loaded[route]), percentile(loaded[route], 0.99)]
                print(f"{route:<14} " + " ".join(f"{value * 1000:>9.1f}" for value in row))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
