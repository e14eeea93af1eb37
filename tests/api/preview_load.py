"""Heavy `/view` preview load on a real server: a legal 9000x9000 PNG and clients that keep asking
for uncacheable JPEG previews of it. Shared by tests/api/test_control_routes_under_load.py and
benchmarks/control_routes.py."""

from __future__ import annotations

import itertools
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from PIL import Image

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only, never a proxy
BIG_SIDE = 9000  # 81 Mpx: under Pillow's 89.5 Mpx bomb limit, so a legal image


def write_big_png(folder: Path) -> str:
    """A 9000x9000 PNG with a gradient (so it is not trivially compressible); returns its name."""
    folder.mkdir(parents=True, exist_ok=True)
    gradient = Image.linear_gradient("L").resize((BIG_SIDE, BIG_SIDE))
    Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.ROTATE_90), gradient)).save(
        folder / "big.png", compress_level=1)
    return "big.png"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def timed_get(url: str) -> float:
    started = time.perf_counter()
    with OPENER.open(url, timeout=60) as response:
        response.read()
    return time.perf_counter() - started


class PreviewLoad:
    """`parallel` threads fetching JPEG previews of the big PNG in a loop, each request at a quality
    no request before it used, so the preview cache cannot answer: every one is a full conversion."""

    def __init__(self, base: str, name: str, parallel: int) -> None:
        self._stop = threading.Event()
        self._url = f"{base}/view?filename={name}&type=input&preview=jpeg;"
        self._qualities = itertools.count(100, -1)  # next() is atomic under the GIL
        self.completed = 0
        self.errors = 0
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(parallel)]

    def _run(self) -> None:
        while not self._stop.is_set():
            quality = next(self._qualities)
            if quality < 1:
                return  # 100 distinct conversions: far more than any run here lasts
            try:
                timed_get(f"{self._url}{quality}")
                self.completed += 1
            except (urllib.error.URLError, OSError):
                self.errors += 1

    def __enter__(self) -> PreviewLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(120)
