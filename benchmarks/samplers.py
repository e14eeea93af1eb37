"""Flow samplers on the shipped demo model: time, distance to a reference sample, caption accuracy, inversion.

1. Generation. Each sampler runs at several budgets of model calls (NFE) on the same held-out
   captions and noises (64x64, CFG from the checkpoint, the "simple" schedule with the model's
   shift). Printed per run: wall time per image (median of `--repeats` timed runs of the whole
   batch), the RMS latent distance to a reference sample from the same noise (RF-Solver, 200
   steps: 400 calls), and the evaluator's accuracy on the decoded images (shape, colour and
   background all right). BOSS schedules (Euler on BOSSScheduler sigmas, cost matrix built once)
   are included.
2. FlowTurbo against Heun. Both also run on FlowTurbo's own schedule, uniform in time (shift 1;
   the paper's code steps a linspace), where FlowTurbo sweeps its block counts (H Heun, P
   pseudo-corrector and R refiner steps). For each Heun budget, Heun's distance is the better of its
   two schedules, and the cheapest FlowTurbo run on either schedule that is as close is reported
   with its wall time as a share of Heun's. Target: at most 70%. FlowTurbo uses the shipped velocity
   refiner when models/velocity_refiners has it.
3. Inversion. Real images of the shapes world, encoded with the demo VAE, are inverted to noise
   and regenerated (source caption, CFG 1): Euler at 2N steps against RF-Solver at N steps, the
   same number of model calls, on the same schedule: the model's default and an inversion schedule
   (shift 0.5, finer steps at low noise, where inversion starts). Printed: latent RMS error and PSNR
   of the decoded reconstruction against the decoded original. Target: RF-Solver's error at most a
   fifth of Euler's.

Run: `python benchmarks/samplers.py` (about 10 minutes on a 2-core CPU; `--images 8 --repeats 1`
for a quick look). Timings are taken in one process, one after another, on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from modeling.loading import load_checkpoint  # noqa: E402
from sampling.boss import boss_sigmas, euler_cost_matrix, uniform_grid  # noqa: E402
from sampling.contract import VelocityModel  # noqa: E402
from sampling.flow import FlowSampling  # noqa: E402
from sampling.guidance import batched_cfg_velocity  # noqa: E402
from sampling.inversion import invert  # noqa: E402
from sampling.noise import seeded_noise  # noqa: E402
from sampling.samplers import ConfiguredSampler, get_sampler  # noqa: E402
from sampling.schedules import compute_sigmas  # noqa: E402
from training.evaluate_demo import EVALUATION_SEED, LATENT_SIZE, recommended_cfg  # noqa: E402
from training.shapes import make_dataset, read_scene  # noqa: E402

CHECKPOINT = PROJECT / "models" / "checkpoints" / "flowmill-shapes-demo"
REFINER = PROJECT / "models" / "velocity_refiners" / "flowmill-shapes-demo-refiner.safetensors"
REFERENCE_STEPS = 200
HEUN_STEPS = (3, 5, 7, 9, 13, 17)
FLOWTURBO_TARGET = 0.70
INVERSION_TARGET = 0.2
FLOWTURBO_SHIFT = 1.0  # uniform time steps, as FlowTurbo's sampler (a linspace over t)
INVERSION_SHIFT = 0.5  # finer steps near sigma 0: both samplers invert far more accurately on it
JOINT = ("shape", "colour", "background")


@dataclass(frozen=True)
class Run:
    """One sampler at one budget."""

    label: str
    sampler: ConfiguredSampler
    sigmas: Tensor
    calls: int


@dataclass(frozen=True)
class Measured:
    run: Run
    seconds_per_image: float
    distance: float
    accuracy: float


class DemoBench:
    """The demo model with a fixed batch of held-out captions and noises."""

    def __init__(self, images: int, repeats: int) -> None:
        torch.manual_seed(0)
        self.model, self.text_encoder, self.vae = load_checkpoint(CHECKPOINT, device="cpu")
        self.cfg = recommended_cfg(CHECKPOINT)
        self.repeats = repeats
        _, captions, self.scenes = make_dataset(images, seed=EVALUATION_SEED, split="eval")
        self.captions = captions
        self.noise = torch.cat([seeded_noise(seed, (1, self.model.latent_channels, LATENT_SIZE, LATENT_SIZE))
                                for seed in range(images)])
        self.velocity = self.guided(captions, self.cfg)

    @torch.no_grad()
    def guided(self, captions: list[str], cfg: float) -> VelocityModel:
        encoded = [self.text_encoder.encode(text) for text in captions]
        context = torch.cat([hidden for hidden, _ in encoded])
        pooled = torch.cat([pooled for _, pooled in encoded])
        if cfg == 1.0:
            return lambda x, sigma: self.model.velocity(x, sigma, context, pooled)
        empty_context, empty_pooled = self.text_encoder.encode("")
        paired_context = torch.cat([context, empty_context.expand_as(context)])
        paired_pooled = torch.cat([pooled, empty_pooled.expand_as(pooled)])
        return batched_cfg_velocity(lambda x, sigma: self.model.velocity(x, sigma, paired_context, paired_pooled), cfg)

    def schedule(self, steps: int, shift: float | None = None) -> Tensor:
        """The "simple" schedule at the model's own shift, or at `shift`."""
        sampling = self.model.sampling if shift is None else FlowSampling(shift=shift)
        return compute_sigmas(sampling, "simple", steps)

    @torch.no_grad()
    def accuracy(self, latents: Tensor) -> float:
        """Share of images whose shape, colour and background the evaluator reads right."""
        pixels = self.vae.decode(latents).clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
        right = [all(getattr(read_scene(image), name) == getattr(scene, name) for name in JOINT)
                 for image, scene in zip(pixels, self.scenes, strict=True)]
        return float(np.mean(right))

    @torch.no_grad()
    def measure(self, run: Run, reference: Tensor) -> Measured:
        times, out = [], None
        for _ in range(self.repeats):
            start = time.perf_counter()
            out = run.sampler(self.velocity, self.noise, run.sigmas, generator=torch.Generator().manual_seed(0))
            times.append(time.perf_counter() - start)
        assert out is not None
        distance = (out - reference).pow(2).mean(dim=(1, 2, 3)).sqrt().mean().item()
        return Measured(run, statistics.median(times) / len(self.noise), distance, self.accuracy(out))


def generation_runs(bench: DemoBench, refiner: object | None) -> list[Run]:
    runs: list[Run] = []

    def add(name: str, steps: int, calls: int, shift: float | None = None, **options: object) -> None:
        label = name if not options else f"{name} {' '.join(f'{k}={v}' for k, v in options.items() if k != 'refiner')}"
        schedule = "" if shift is None else f", shift {shift:g}"
        runs.append(Run(f"{label} ({steps} steps{schedule})", get_sampler(name, **options),
                        bench.schedule(steps, shift), calls))

    for steps in (4, 8, 12, 16, 24, 32):
        add("euler", steps, steps)
    for steps in (8, 16, 32):
        add("euler_ancestral", steps, steps)
    for steps in (4, 8, 16, 32):
        add("dpmpp_2m", steps, steps)
    for steps in HEUN_STEPS:
        add("heun", steps, 2 * steps - 1)  # the step into sigma 0 is Euler's single call
    for steps in (2, 4, 6, 8, 12, 16):
        add("rf_solver", steps, 2 * steps)
    for steps in (4, 6, 8, 10, 12, 16):
        add("flowturbo", steps, steps + 1, heun_steps=1)
    if refiner is not None:
        for pseudo in (1, 2, 3, 5, 7, 9, 13):
            add("flowturbo", 4 + pseudo, 2 + pseudo, heun_steps=1, pseudo_steps=pseudo, refiner_steps=3,
                refiner=refiner)
    runs.extend(flowturbo_schedule_runs(bench, refiner))
    return runs


def flowturbo_schedule_runs(bench: DemoBench, refiner: object | None) -> list[Run]:
    """Heun and a sweep of FlowTurbo's block counts on FlowTurbo's uniform-time schedule."""
    runs = [Run(f"heun ({steps} steps, shift {FLOWTURBO_SHIFT:g})", get_sampler("heun"),
                bench.schedule(steps, FLOWTURBO_SHIFT), 2 * steps - 1) for steps in HEUN_STEPS]
    for heun in (1, 2):
        for pseudo in (2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15):
            for refine in (0, 2) if refiner is not None else (0,):
                options = {"heun_steps": heun, "pseudo_steps": pseudo, "refiner_steps": refine}
                if refine:
                    options["refiner"] = refiner
                steps = heun + pseudo + refine
                runs.append(Run(f"flowturbo H{heun} P{pseudo} R{refine} ({steps} steps, shift {FLOWTURBO_SHIFT:g})",
                                get_sampler("flowturbo", **options), bench.schedule(steps, FLOWTURBO_SHIFT),
                                2 * heun + pseudo))
    return runs


def boss_runs(bench: DemoBench) -> tuple[list[Run], float]:
    """Euler on BOSS schedules, and the seconds the cost matrix took (99 calls on up to 4 noises)."""
    captions = bench.captions[:4]
    noise = torch.cat([seeded_noise(1000 + i, bench.noise.shape[1:]).unsqueeze(0) for i in range(len(captions))])
    velocity = bench.guided(captions, bench.cfg)
    start = time.perf_counter()
    matrix = euler_cost_matrix(velocity, noise, uniform_grid(100))
    seconds = time.perf_counter() - start
    runs = [Run(f"euler on BOSS ({steps} steps)", get_sampler("euler"), boss_sigmas(matrix, steps), steps)
            for steps in (4, 8, 12, 16)]
    return runs, seconds


def flowturbo_against_heun(results: list[Measured]) -> list[dict]:
    """Per Heun budget (its better schedule), the fastest FlowTurbo run that is at least as close."""
    rows = []
    by_calls: dict[int, Measured] = {}
    for m in results:
        if m.run.label.startswith("heun") and (m.run.calls not in by_calls
                                               or m.distance < by_calls[m.run.calls].distance):
            by_calls[m.run.calls] = m
    heun = sorted(by_calls.values(), key=lambda m: m.run.calls)
    turbo = [m for m in results if m.run.label.startswith("flowturbo")]
    for h in heun:
        good = [t for t in turbo if t.distance <= h.distance]
        if not good:
            rows.append({"heun": h.run.label, "heun_distance": h.distance, "flowturbo": None})
            continue
        best = min(good, key=lambda t: t.seconds_per_image)
        rows.append({"heun": h.run.label, "heun_distance": h.distance, "heun_ms": 1000 * h.seconds_per_image,
                     "flowturbo": best.run.label, "flowturbo_distance": best.distance,
                     "flowturbo_ms": 1000 * best.seconds_per_image,
                     "time_ratio": best.seconds_per_image / h.seconds_per_image})
    return rows


@torch.no_grad()
def inversion(bench: DemoBench, images: int, shift: float | None) -> list[dict]:
    """Round trips at equal calls on the "simple" schedule at `shift` (None: the model's own)."""
    pixels, captions, _ = make_dataset(images, seed=EVALUATION_SEED + 7, split="eval")
    latents = bench.vae.encode(torch.from_numpy(pixels).float() / 255)
    originals = bench.vae.decode(latents).clamp(0, 1)
    velocity = bench.guided(captions, 1.0)
    rows = []
    for steps in (5, 10, 25, 50, 100):
        row: dict = {"shift": shift if shift is not None else bench.model.sampling.shift,
                     "rf_solver_steps": steps, "euler_steps": 2 * steps, "calls_each_way": 2 * steps}
        for name, sampler_steps in (("euler", 2 * steps), ("rf_solver", steps)):
            sampler, sigmas = get_sampler(name), bench.schedule(sampler_steps, shift)
            regenerated = sampler(velocity, invert(velocity, sampler, sigmas, latents), sigmas)
            decoded = bench.vae.decode(regenerated).clamp(0, 1)
            mse = (decoded - originals).pow(2).mean().item()
            row[f"{name}_latent_rms"] = (regenerated - latents).pow(2).mean().sqrt().item()
            row[f"{name}_psnr_db"] = 10 * np.log10(1.0 / max(mse, 1e-12))
        row["error_ratio"] = row["rf_solver_latent_rms"] / row["euler_latent_rms"]
        rows.append(row)
    return rows


def load_refiner() -> object | None:
    if not REFINER.exists():
        return None
    from modeling.velocity_refiner import load_refiner as load  # the refiner arrives with its own module

    return load(REFINER, device="cpu")


def print_table(results: list[Measured]) -> None:
    print(f"{'sampler':52} {'calls':>5} {'ms/img':>8} {'distance':>9} {'accuracy':>8}")
    for m in results:
        print(f"{m.run.label:52} {m.run.calls:5d} {1000 * m.seconds_per_image:8.2f} {m.distance:9.4f} "
              f"{100 * m.accuracy:7.1f}%")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=40, help="held-out captions/noises per run")
    parser.add_argument("--inversion-images", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per sampler; the median counts")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    bench = DemoBench(args.images, args.repeats)
    refiner = load_refiner()
    print(f"demo model, {args.images} held-out captions, 64x64, cfg {bench.cfg}, 'simple' schedule "
          f"(shift {bench.model.sampling.shift}); refiner: {'shipped' if refiner else 'none (H and P blocks only)'}")
    with torch.no_grad():
        reference = get_sampler("rf_solver")(bench.velocity, bench.noise, bench.schedule(REFERENCE_STEPS))
    print(f"reference: rf_solver, {REFERENCE_STEPS} steps; its accuracy {100 * bench.accuracy(reference):.1f}%\n")

    runs = generation_runs(bench, refiner)
    extra, boss_seconds = boss_runs(bench)
    results = [bench.measure(run, reference) for run in runs + extra]
    print_table(results)
    print(f"(BOSS cost matrix: 100-point grid, 4 noises, 99 calls, {boss_seconds:.2f} s, built once)\n")

    comparison = flowturbo_against_heun(results)
    print(f"FlowTurbo against Heun (target: Heun's distance in at most {FLOWTURBO_TARGET:.0%} of its time)")
    for row in comparison:
        if row["flowturbo"] is None:
            print(f"  {row['heun']}: distance {row['heun_distance']:.4f}, no FlowTurbo run is as close")
            continue
        print(f"  {row['heun']}: {row['heun_ms']:.1f} ms, distance {row['heun_distance']:.4f} | "
              f"{row['flowturbo']}: {row['flowturbo_ms']:.1f} ms, distance {row['flowturbo_distance']:.4f} | "
              f"time {row['time_ratio']:.0%}")

    print(f"\nInversion round trip on {args.inversion_images} real images (equal calls; target: RF-Solver error "
          f"at most {INVERSION_TARGET:.0%} of Euler's)")
    rows = []
    for shift, title in ((None, f"the model's schedule (shift {bench.model.sampling.shift:g})"),
                         (INVERSION_SHIFT, f"the inversion schedule (shift {INVERSION_SHIFT:g})")):
        print(f" on {title}:")
        for row in inversion(bench, args.inversion_images, shift):
            rows.append(row)
            print(f"  {row['calls_each_way']:3d} calls each way: euler {row['euler_latent_rms']:.4f} "
                  f"({row['euler_psnr_db']:.1f} dB) | rf_solver {row['rf_solver_latent_rms']:.4f} "
                  f"({row['rf_solver_psnr_db']:.1f} dB) | ratio {row['error_ratio']:.3f}")
    if args.json:
        generation = [{"sampler": m.run.label, "calls": m.run.calls, "ms_per_image": 1000 * m.seconds_per_image,
                       "distance": m.distance, "accuracy": m.accuracy} for m in results]
        figures = {"generation": generation,
                   "boss_cost_matrix_seconds": boss_seconds, "flowturbo_vs_heun": comparison, "inversion": rows}
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
