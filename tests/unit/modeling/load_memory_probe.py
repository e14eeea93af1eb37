"""Peak resident memory of loading one diffusion model through the ModelManager, in a process of its own.

Run as `python tests/unit/modeling/load_memory_probe.py FILE [--copy-weights]`; prints one JSON
object. tests/unit/modeling/test_load_memory.py and benchmarks/models.py run it in a fresh
subprocess, so nothing another test or benchmark step allocated counts.

What is measured: the process's resident set (VmRSS, which counts the pages of a memory-mapped
file once they are read) just before the first `ModelManager.use`, then its high-water mark
(VmHWM, reset first through /proc/self/clear_refs) after the scope has opened and every weight has
been read once. Reading every weight matters: safetensors maps the file, so opening the scope
alone brings almost none of it into the resident set (the kernel reads ahead into its page cache,
which is not the process's memory), and a loader that copied the weights later would otherwise go
unseen. A second `use` follows, timed, with the manager's `loads` counter before and after.

`--copy-weights` loads through a loader that clones every weight after the real loader ran, the
mistake the measurement must catch; the test runs it to show the probe can see a second copy.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(PROJECT))

import torch  # noqa: E402

from modeling.manager import Budgets, ModelManager  # noqa: E402
from modeling.model_refs import ModelRef, WeightsSource  # noqa: E402
from modeling.reference_loading import load_reference  # noqa: E402

CPU = torch.device("cpu")
_KIB = 1024


def memory_status() -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon and RssFile of this process, in bytes."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            fields[name] = int(value.split()[0]) * _KIB
    return fields


def reset_peak() -> None:
    """Set VmHWM to the current VmRSS (Linux 4.0+), so the peak seen next is the load's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError as error:
        raise SystemExit(f"cannot reset the peak resident memory through /proc/self/clear_refs ({error}); "
                         f"this probe needs Linux 4.0 or later") from None


def page_cache_bytes(path: Path) -> int | None:
    """Bytes of `path` in the kernel's page cache (util-linux `fincore`), None without that tool.

    Not part of the process's resident set: it shows how much of the file opening the scope read
    from the disk (safetensors' mapping is read ahead by the kernel) before any weight was used."""
    try:
        finished = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                                  capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return int(finished.stdout.split()[0])


def touch_weights(module: torch.nn.Module) -> float:
    """Read every byte of every parameter and buffer once (a sum each); returns the total, which
    also keeps the reads from being optimised away."""
    return sum(float(tensor.double().sum()) if tensor.dtype != torch.float32 else float(tensor.sum())
               for tensor in (*module.parameters(), *module.buffers()))


def copying_loader(ref: ModelRef, device: torch.device) -> Any:
    """The real loader followed by a clone of every weight: a loader that holds two copies while loading."""
    model = load_reference(ref, device)
    for parameter in model.module.parameters():
        parameter.data = parameter.data.clone()
    return model


def measure(path: Path, copy_weights: bool) -> dict[str, Any]:
    stat = path.stat()
    ref = ModelRef(WeightsSource(str(path), f"{stat.st_size}:{stat.st_mtime_ns}"), "diffusion_model",
                   label=path.name)
    manager = ModelManager(CPU, Budgets(ram=4 * stat.st_size, vram=4 * stat.st_size),
                           copying_loader if copy_weights else load_reference)
    import diffusers  # noqa: F401  (imported before the baseline: its import is not loading)
    from diffusers import FluxTransformer2DModel  # noqa: F401

    baseline = memory_status()
    reset_peak()
    started = time.perf_counter()
    with manager.use(ref) as model:
        opened = time.perf_counter()
        after_open = memory_status()
        cached_after_open = page_cache_bytes(path)
        touch_weights(model.module)
        read = time.perf_counter()
    peak = memory_status()
    loads_after_first = manager.loads
    started_again = time.perf_counter()
    with manager.use(ref) as model:
        second_open = time.perf_counter() - started_again
        touch_weights(model.module)
    second = time.perf_counter() - started_again
    increase = peak["VmHWM"] - baseline["VmRSS"]
    return {
        "file_bytes": stat.st_size,
        "weight_bytes": manager.host_bytes,
        "baseline_rss": baseline["VmRSS"],
        "rss_after_open": after_open["VmRSS"],
        "peak_rss": peak["VmHWM"],
        "peak_increase": increase,
        "peak_over_file": increase / stat.st_size,
        "rss_file_after_read": peak["RssFile"],
        "page_cache_after_open": cached_after_open,
        "open_seconds": opened - started,
        "first_use_seconds": read - started,
        "second_open_seconds": second_open,
        "second_use_seconds": second,
        "loads_after_first_use": loads_after_first,
        "loads_after_second_use": manager.loads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="a FLUX-layout diffusion model .safetensors file")
    parser.add_argument("--copy-weights", action="store_true", help="load through a loader that clones the weights")
    args = parser.parse_args()
    print(json.dumps(measure(args.file, args.copy_weights)))


if __name__ == "__main__":
    main()
