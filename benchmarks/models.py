"""The model manager on random-weight FLUX-layout transformers: loading, residency, switching, streaming.

Writes to a temporary folder a FLUX transformer in diffusers' layout (`FluxTransformer2DModel`) of
at least `--size-gb` in float32 and three smaller ones (`--switch-mb` each), tensor by tensor
(tests/fixtures/large_flux.py), then measures through the real `ModelManager`:

1. Loading, in a fresh process (tests/unit/modeling/load_memory_probe.py, which the load-memory
   test also runs), after asking the kernel to drop the file from its page cache: the first use
   (the scope opened and every weight read once: safetensors maps the file, so the weights enter
   the process's resident memory only when used, though the kernel reads most of the file ahead
   into its page cache while the scope opens), its throughput, the peak resident memory over the
   file size (issue 14's bound: 1.15x), and the second use (time, and that the `loads` counter
   did not move).
2. Switching between three models under a host budget (`--ram-budget`) that holds two: the loads
   that the sequence A B A B C A causes and the time of each use (scope + one forward). Files not
   resident are dropped from the page cache before each use, so a reload reads the disk.
3. One forward of the large model fully resident against streamed block by block under a device
   budget of a third of the model, in alternation. On the CPU the device tier is the manager's
   accounting (`DeviceAccount`): placing a weight on the CPU copies nothing, so the ratio is the
   cost of streaming's hooks, not of transfers; the output says so.
4. On CUDA, when one is available: the first use onto the GPU, and sampling speed (an Euler loop
   over the model's velocity) fully resident against streamed under a device budget of a third.
5. LoRA apply and restore time: a random rank-16 LoRA (PEFT layout) on every attention projection
   of the large model, applied by `LoraPatch` (modeling/lora/patch.py) to the resident module and
   restored, on the CPU and on CUDA when there is one; and a whole scope of the patched reference.

Run: `python benchmarks/models.py` (a few minutes on a 2-core CPU); `--size-gb 0.3 --switch-mb 100`
for a quick look; `--keep DIR` writes the files there and leaves them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from modeling.conditioning import FluxConditioning  # noqa: E402
from modeling.diffusion_model import DiffusionModel  # noqa: E402
from modeling.manager import Budgets, ModelManager  # noqa: E402
from modeling.model_refs import ModelRef, WeightsSource  # noqa: E402
from modeling.placement import streaming_plan  # noqa: E402
from modeling.reference_loading import load_reference  # noqa: E402
from tests.fixtures.large_flux import (  # noqa: E402
    HEAD_DIM,
    LATENT_CHANNELS,
    POOLED_FEATURES,
    TEXT_FEATURES,
    FluxSize,
    evict_from_page_cache,
    size_for,
    write_flux_file,
)

PROBE = PROJECT / "tests" / "unit" / "modeling" / "load_memory_probe.py"
CPU = torch.device("cpu")
GB = 1e9
MEMORY_BOUND = 1.15
TEXT_TOKENS = 16
SWITCH_SEQUENCE = "ABABCA"


@dataclass(frozen=True)
class Inputs:
    """A velocity call's inputs other than the noise level: a latent and random text conditioning."""

    x: torch.Tensor
    context: torch.Tensor
    pooled: torch.Tensor

    @classmethod
    def random(cls, latent: int, device: torch.device) -> Inputs:
        generator = torch.Generator().manual_seed(0)
        return cls(torch.randn(1, LATENT_CHANNELS, latent, latent, generator=generator).to(device),
                   torch.randn(1, TEXT_TOKENS, TEXT_FEATURES, generator=generator).to(device),
                   torch.randn(1, POOLED_FEATURES, generator=generator).to(device))

    def velocity(self, model: DiffusionModel, sigma: float = 0.7) -> torch.Tensor:
        return model.velocity(self.x, torch.tensor([sigma]), FluxConditioning(self.context, self.pooled))


def reference(path: Path) -> ModelRef:
    stat = path.stat()
    return ModelRef(WeightsSource(str(path), f"{stat.st_size}:{stat.st_mtime_ns}"), "diffusion_model",
                    label=path.name)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[], Any], device: torch.device = CPU) -> float:
    synchronize(device)
    started = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - started


def describe(size: FluxSize) -> str:
    return f"{size.heads} heads x {HEAD_DIM}, {size.double_blocks} double + {size.single_blocks} single blocks"


def write_model(path: Path, size: FluxSize, seed: int) -> int:
    seconds = timed(lambda: write_flux_file(path, size, seed))
    written = path.stat().st_size
    print(f"wrote {path.name}: {written / GB:.3f} GB ({describe(size)}) in {seconds:.1f} s")
    return written


# -- 1. loading ------------------------------------------------------------------------------

def probe_loading(path: Path) -> dict[str, Any]:
    """The load-memory probe's figures for `path`, run in a fresh process after dropping the file
    from the page cache."""
    evict_from_page_cache(path)
    finished = subprocess.run([sys.executable, str(PROBE), str(path)], capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"the load-memory probe failed:\n{finished.stderr[-3000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def measure_loading(path: Path) -> None:
    probe = probe_loading(path)
    size = probe["file_bytes"]
    verdict = "PASS" if probe["peak_over_file"] <= MEMORY_BOUND else "FAIL"
    print(f"\n1. loading {size / GB:.3f} GB (float32) on the CPU, fresh process, file dropped from the page "
          f"cache first")
    cached = probe["page_cache_after_open"]
    read_ahead = "" if cached is None else f"  (the kernel read {cached / size:.0%} of the file into its page cache)"
    print(f"   scope opened (file mapped, no weight used yet) {probe['open_seconds']:9.3f} s{read_ahead}")
    print(f"   first use (scope + every weight read once)      {probe['first_use_seconds']:9.3f} s  "
          f"= {size / probe['first_use_seconds'] / GB:.2f} GB/s")
    print(f"   peak resident memory over file size             {probe['peak_over_file']:9.3f} x  "
          f"(+{probe['peak_increase'] / GB:.3f} GB over a {probe['baseline_rss'] / GB:.3f} GB baseline; "
          f"bound {MEMORY_BOUND}x: {verdict})")
    print(f"   second use: scope opened                        {probe['second_open_seconds'] * 1000:9.3f} ms")
    print(f"   second use (scope + every weight read again)    {probe['second_use_seconds']:9.3f} s  "
          f"loads {probe['loads_after_first_use']} -> {probe['loads_after_second_use']} "
          f"({'no disk read' if probe['loads_after_second_use'] == probe['loads_after_first_use'] else 'RELOADED'})")


def measure_half_precision_loading(path: Path) -> None:
    """A bfloat16 file of the same model: on the CPU it computes in float32, so loading casts it."""
    probe = probe_loading(path)
    size, weights = probe["file_bytes"], probe["weight_bytes"]
    over_weights = probe["peak_increase"] / weights
    print(f"   the same model stored in bfloat16 ({size / GB:.3f} GB), cast to float32 for the CPU "
          f"({weights / GB:.3f} GB of weights):")
    print(f"   peak resident memory over the float32 weights   {over_weights:9.3f} x  "
          f"(+{probe['peak_increase'] / GB:.3f} GB, {probe['peak_over_file']:.2f}x the file; bound "
          f"{MEMORY_BOUND}x: {'PASS' if over_weights <= MEMORY_BOUND else 'FAIL'})")


# -- 2. switching ----------------------------------------------------------------------------

def measure_switching(paths: dict[str, Path], latent: int) -> None:
    refs = {name: reference(path) for name, path in paths.items()}
    weights = max(path.stat().st_size for path in paths.values())
    budget = int(2.5 * weights)  # two fit, three do not
    manager = ModelManager(CPU, Budgets(ram=budget, vram=budget), load_reference)
    inputs = Inputs.random(latent, CPU)
    print(f"\n2. switching between three {weights / GB:.3f} GB models, ram budget {budget / GB:.3f} GB (holds two), "
          f"each use = scope + one forward at a {latent}x{latent} latent")
    print(f"   {'use':<5}{'loads':>6}{'seconds':>10}  resident after")
    loaded_times, resident_times = [], []
    for name in SWITCH_SEQUENCE:
        for path in paths.values():
            evict_from_page_cache(path)  # pages of resident models are mapped and stay
        loads = manager.loads

        def use(name: str = name) -> None:
            with manager.use(refs[name]) as model:
                inputs.velocity(model)

        seconds = timed(use)
        loaded = manager.loads - loads
        (loaded_times if loaded else resident_times).append(seconds)
        labels = {item["name"] for item in manager.stats()["loaded"]}
        held = "".join(sorted(other for other, ref in refs.items() if ref.label in labels))
        print(f"   {name:<5}{loaded:>6}{seconds:>10.3f}  {held}")
    print(f"   {' '.join(SWITCH_SEQUENCE)}: {manager.loads} loads "
          f"({', '.join(f'{name} {count}' for name, count in _loads_by_name(manager, refs).items())}); "
          f"median use {_median(loaded_times)} with a load, {_median(resident_times)} resident")


def _loads_by_name(manager: ModelManager, refs: dict[str, ModelRef]) -> dict[str, int]:
    return {name: manager.loads_by_key.get(ref.weights_key, 0) for name, ref in refs.items()}


def _median(times: list[float]) -> str:
    return f"{statistics.median(times):.3f} s" if times else "-"


# -- 3./4. resident against streamed ---------------------------------------------------------

@dataclass(frozen=True)
class PlacementRun:
    seconds: list[float]
    peak_placed: int  # most bytes of weights on the device at once (the manager's account)
    # CUDA only: the most device memory this model took during a run (its weights already there
    # plus what the run allocated above the start: weights placed for the run and activations).
    peak_device_memory: int | None


def compare_placements(path: Path, device: torch.device, latent: int, steps: int, repeats: int,
                       ram: int) -> tuple[PlacementRun, PlacementRun, int, float]:
    """Resident and streamed runs in alternation; each run is `steps` Euler steps over the velocity.

    Returns both runs, the streamed device budget, and the first sampling run's time (the weights
    read from the file and placed on the device whole)."""
    size = path.stat().st_size
    ref = reference(path)
    resident = ModelManager(device, Budgets(ram=ram, vram=2 * size), load_reference)
    inputs = Inputs.random(latent, device)
    sigmas = torch.linspace(1.0, 0.0, steps + 1).tolist()

    def run_steps(model: DiffusionModel) -> None:
        x = inputs.x
        for sigma, following in zip(sigmas[:-1], sigmas[1:], strict=True):
            x = x + (following - sigma) * Inputs(x, inputs.context, inputs.pooled).velocity(model, sigma)

    def sample(manager: ModelManager) -> None:
        with manager.use(ref) as model:
            run_steps(model)

    def first_sample() -> None:  # loads, places on the device whole, and warms up the kernels
        nonlocal budget
        with resident.use(ref) as model:
            # A third of the model, or the least it streams in when its largest block is bigger.
            budget = max(size // 3, streaming_plan(model.module).least_device_bytes)
            run_steps(model)

    budget = 0
    first_use = timed(first_sample, device)
    streamed = ModelManager(device, Budgets(ram=ram, vram=budget), load_reference)
    sample(streamed)  # its own load (the page cache is warm now), kept out of the timings
    runs: dict[str, list[float]] = {"resident": [], "streamed": []}
    peaks: dict[str, int | None] = {"resident": None, "streamed": None}
    for _ in range(repeats):
        for label, manager in (("resident", resident), ("streamed", streamed)):
            kept = manager.account.placed  # weights already on the device when the run starts
            start_memory = _reset_device_peak(device)
            runs[label].append(timed(lambda manager=manager: sample(manager), device))
            peak = _device_peak(device, start_memory)
            if peak is not None:
                peaks[label] = max(peaks[label] or 0, kept + peak)
    return (PlacementRun(runs["resident"], resident.account.peak, peaks["resident"]),
            PlacementRun(runs["streamed"], streamed.account.peak, peaks["streamed"]), budget, first_use)


def _reset_device_peak(device: torch.device) -> int:
    if device.type != "cuda":
        return 0
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device)


def _device_peak(device: torch.device, start: int) -> int | None:
    return torch.cuda.max_memory_allocated(device) - start if device.type == "cuda" else None


def print_placements(resident: PlacementRun, streamed: PlacementRun, budget: int, steps: int) -> None:
    # The median and the best of the runs: on a shared machine the best is the least disturbed.
    print(f"   {'':<10}{'s/step median':>14}{'best':>8}{'steps/s':>9}{'weights placed at most':>24}"
          f"{'device memory peak':>20}")
    for label, run in (("resident", resident), ("streamed", streamed)):
        median, best = statistics.median(run.seconds) / steps, min(run.seconds) / steps
        device_memory = "-" if run.peak_device_memory is None else f"{run.peak_device_memory / GB:.3f} GB"
        print(f"   {label:<10}{median:>14.3f}{best:>8.3f}{1 / median:>9.2f}{run.peak_placed / GB:>21.3f} GB"
              f"{device_memory:>20}")
    ratio = statistics.median(streamed.seconds) / statistics.median(resident.seconds)
    best_ratio = min(streamed.seconds) / min(resident.seconds)
    print(f"   streamed / resident time: {ratio:.2f}x median, {best_ratio:.2f}x best ({len(resident.seconds)} runs "
          f"each, in alternation); streamed placed at most {streamed.peak_placed / GB:.3f} GB "
          f"{'within' if streamed.peak_placed <= budget else 'OVER'} the {budget / GB:.3f} GB budget")


def measure_cpu_streaming(path: Path, latent: int, repeats: int) -> None:
    size = path.stat().st_size
    print(f"\n3. one forward of the {size / GB:.3f} GB model at a {latent}x{latent} latent, resident against "
          f"streamed under a device budget of a third of the model")
    print("   CPU: the device tier is the manager's accounting only (placing a weight on the CPU copies\n"
          "   nothing), so this is streaming's bookkeeping cost, not transfer time")
    resident, streamed, budget, _ = compare_placements(path, CPU, latent, steps=1, repeats=repeats, ram=4 * size)
    print_placements(resident, streamed, budget, steps=1)


def measure_cuda(path: Path, latent: int, steps: int, repeats: int) -> None:
    device = torch.device("cuda")
    size = path.stat().st_size
    print(f"\n4. CUDA ({torch.cuda.get_device_name(device)}): {steps} Euler steps of the {size / GB:.3f} GB model "
          f"at a {latent}x{latent} latent, fully resident against streamed under a device budget of "
          f"a third of the model")
    resident, streamed, budget, first_use = compare_placements(path, device, latent, steps, repeats, ram=4 * size)
    print(f"   first use onto the GPU (load, copy to the device whole, {steps} steps): {first_use:.3f} s")
    print_placements(resident, streamed, budget, steps)


# -- 5. LoRA ---------------------------------------------------------------------------------

LORA_RANK = 16


def write_lora(path: Path, module: torch.nn.Module, rank: int) -> int:
    """A random rank-`rank` LoRA in the PEFT/diffusers layout on every linear layer of every attention
    (`transformer.<name>.lora_A.weight` / `.lora_B.weight`); returns how many layers it changes."""
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(7)
    state = {}
    for name, layer in module.named_modules():
        if ".attn." in f".{name}." and isinstance(layer, torch.nn.Linear):
            state[f"transformer.{name}.lora_A.weight"] = torch.randn(rank, layer.in_features, generator=generator)
            state[f"transformer.{name}.lora_B.weight"] = 0.01 * torch.randn(layer.out_features, rank,
                                                                             generator=generator)
    save_file(state, str(path))
    return len(state) // 2


def _storages(module: torch.nn.Module) -> dict[str, int]:
    """Where each parameter's data lives: a patch that restores the base hands back the same tensors,
    which were never written (LoraPatch merges into new tensors)."""
    return {name: parameter.data_ptr() for name, parameter in module.named_parameters()}


def _open_and_close(manager: ModelManager, ref: ModelRef) -> None:
    with manager.use(ref):
        pass


def measure_lora(path: Path, device: torch.device, repeats: int, latent: int) -> None:
    from modeling.lora.patch import LoraPatch
    from modeling.model_refs import PatchSite

    size = path.stat().st_size
    manager = ModelManager(device, Budgets(ram=4 * size, vram=2 * size), load_reference)
    base = reference(path)
    lora_path = path.with_name("lora-attention.safetensors")
    with manager.use(base) as model:
        layers = write_lora(lora_path, model.module, LORA_RANK)
    patch = LoraPatch(reference(lora_path).source, 1.0, "diffusion_model", label=lora_path.name)
    merged, branched = PatchSite(device, merge=True, files=manager), PatchSite(device, merge=False, files=manager)
    inputs = Inputs.random(latent, device)
    times: dict[str, list[float]] = {name: [] for name in
                                     ("apply", "restore", "branch", "unbranch", "scope", "plain", "merged", "hooked")}
    for _ in range(repeats):
        with manager.use(base) as model:
            before = _storages(model.module)
            times["plain"].append(timed(lambda: inputs.velocity(model), device))
            undo: list[Callable[[], None]] = []
            times["apply"].append(timed(lambda: undo.append(patch.apply(model.module, merged)), device))
            changed = sum(pointer != before[name] for name, pointer in _storages(model.module).items())
            times["merged"].append(timed(lambda: inputs.velocity(model), device))
            times["restore"].append(timed(undo.pop(), device))
            restored = _storages(model.module) == before
            times["branch"].append(timed(lambda: undo.append(patch.apply(model.module, branched)), device))
            times["hooked"].append(timed(lambda: inputs.velocity(model), device))
            times["unbranch"].append(timed(undo.pop(), device))
        times["scope"].append(timed(lambda: _open_and_close(manager, base.patched(patch)), device))
    print(f"   rank-{LORA_RANK} LoRA on all {layers} attention projections "
          f"({lora_path.stat().st_size / 1e6:.1f} MB file, PEFT layout, {sum(manager.patch_file_reads.values())} "
          f"read in all), strength 1, on {device}, forward at a {latent}x{latent} latent")
    rows = ((f"merge: apply (match, merge {changed} weights)", "apply", ""),
            ("merge: restore (the base tensors handed back)", "restore",
             "the base tensors are back (same storage)" if restored else "BASE WEIGHTS NOT RESTORED"),
            ("side branches (streamed / fp8 base): apply", "branch", "no weight replaced"),
            ("side branches: remove", "unbranch", ""),
            ("use() of the patched reference, open + close", "scope", f"loads stayed at {manager.loads}"),
            ("forward, no LoRA", "plain", ""),
            ("forward, LoRA merged", "merged", ""),
            ("forward, LoRA as side branches", "hooked",
             f"{statistics.median(times['hooked']) / statistics.median(times['merged']):.2f}x the merged forward"))
    print(f"   {'':<52}{'median':>10}{'best':>10}")
    for label, name, note in rows:
        median, best = statistics.median(times[name]) * 1000, min(times[name]) * 1000
        print(f"   {label:<52}{median:>7.1f} ms{best:>7.1f} ms  {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=1.0, help="the large model's weights, at least (GB)")
    parser.add_argument("--switch-mb", type=float, default=300.0, help="each of the three switched models (MB)")
    parser.add_argument("--latent", type=int, default=16, help="latent size of the CPU forwards (16 = 128 px)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each placement and of the LoRA")
    parser.add_argument("--gpu-latent", type=int, default=64, help="latent size on CUDA (64 = 512 px)")
    parser.add_argument("--gpu-steps", type=int, default=10, help="Euler steps per run on CUDA")
    parser.add_argument("--keep", type=Path, help="write the model files to this folder and leave them")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device'}")
    with tempfile.TemporaryDirectory(prefix="flowmill-models-") as temporary:
        folder = args.keep or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        large = folder / "flux-large.safetensors"
        large_size = size_for(int(args.size_gb * GB))
        write_model(large, large_size, seed=0)
        switch_size = size_for(int(args.switch_mb * 1e6))
        switched = {name: folder / f"flux-{name}.safetensors" for name in "ABC"}
        for seed, path in enumerate(switched.values(), start=1):
            write_model(path, switch_size, seed)
        measure_loading(large)
        half = folder / "flux-large-bf16.safetensors"
        write_flux_file(half, large_size, seed=0, dtype=torch.bfloat16)
        measure_half_precision_loading(half)
        half.unlink()
        measure_switching(switched, args.latent)
        measure_cpu_streaming(large, args.latent, args.repeats)
        if torch.cuda.is_available():
            measure_cuda(large, args.gpu_latent, args.gpu_steps, args.repeats)
        else:
            print("\n4. CUDA: no CUDA device here; the GPU rows (first use onto the GPU, streamed against "
                  "resident sampling speed) are skipped")
        print("\n5. LoRA apply and restore on the large model")
        measure_lora(large, CPU, args.repeats, args.latent)
        if torch.cuda.is_available():
            measure_lora(large, torch.device("cuda"), args.repeats, args.gpu_latent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
