"""One sampling run of a loaded model: the NOISE value, the job, and the run itself.

- `SeededNoise` (the NOISE socket) draws the initial noise on the CPU from its seed, so a seed
  gives the same image on any device;
- `run_sampling` (inside the caller's model scope) moves everything to the model's device, runs
  sampling/run.py's `sample`, and reports each step through `SamplingProgress`, with a latent
  preview when one is due (at most 20 a second, and always on the last step). Stochastic samplers
  draw their noise from a CPU generator seeded with the job's seed, so a seed gives the same image
  everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from modeling.diffusion_model import DiffusionModel
from modeling.guidance import Guider
from modeling.previews import Reporter, SamplingProgress
from sampling.contract import SamplerFunction
from sampling.noise import seeded_noise
from sampling.run import sample


@dataclass(frozen=True)
class SeededNoise:
    """A NOISE source: the whole batch drawn on the CPU from one seed (ComfyUI's prepare_noise)."""

    seed: int

    def generate_noise(self, latent: Mapping[str, Any]) -> torch.Tensor:
        samples = latent["samples"]
        return seeded_noise(self.seed, tuple(samples.shape), batch_index=latent.get("batch_index"))


# Offset from the seed of the initial noise: a generator with the same seed would make the first
# fresh noise of an ancestral step a copy of the initial noise (as ComfyUI's does on the CPU).
SAMPLER_SEED_OFFSET = 1


def seeded_generator(seed: int) -> torch.Generator:
    """The CPU generator stochastic samplers draw from; CPU, so a seed means the same on every device."""
    return torch.Generator("cpu").manual_seed((seed + SAMPLER_SEED_OFFSET) % 2**64)


@dataclass(frozen=True)
class SamplingJob:
    """One sampling run: who asks (for errors), how to denoise, from where, and the seed for a
    stochastic sampler's fresh noise."""

    node: str
    guider: Guider
    sampler: SamplerFunction
    sigmas: torch.Tensor
    noise: torch.Tensor
    latent: dict[str, Any]
    seed: int = 0


def _check_refiner(job: SamplingJob, model: DiffusionModel) -> None:
    """A FlowTurbo velocity refiner must work on the model's latents; a mismatch would fail deep in a conv."""
    options = getattr(job.sampler, "options", {})
    refiner = options.get("refiner") if isinstance(options, Mapping) else None
    channels = getattr(refiner, "latent_channels", None)
    if channels is not None and channels != model.latent_channels:
        raise ValueError(
            f"{job.node}: the sampler's velocity refiner {getattr(refiner, 'name', '')!r} works on {channels}-channel "
            f"latents but the model's have {model.latent_channels}; load the refiner trained for this model"
        )


def run_sampling(report: Reporter, job: SamplingJob, model: DiffusionModel) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sample with `model`, the loaded `job.guider.model` (the caller holds its scope), reporting each step
    to `report` (a node's `ctx.progress`); return (output, denoised_output) LATENTs on the CPU, each a copy
    of job.latent."""
    samples = job.latent["samples"]
    if job.noise.shape != samples.shape:
        raise ValueError(
            f"{job.node}: noise has shape {tuple(job.noise.shape)} but latent_image has {tuple(samples.shape)}"
        )
    _check_refiner(job, model)
    velocity = job.guider.velocity_model(model, samples.shape[0])
    progress = SamplingProgress(report, model)
    device = model.device
    try:
        result = sample(
            velocity, job.sampler, job.sigmas.to(device, torch.float32), job.noise.to(device, torch.float32),
            samples.to(device), callback=progress, generator=seeded_generator(job.seed),
            noise_scaling=model.sampling.noise_latent,
        )
    except ValueError as error:  # a sampler refusing its options or schedule: name the node
        raise ValueError(f"{job.node}: {error}") from error
    output = dict(job.latent)
    output["samples"] = result.to("cpu", torch.float32)
    denoised = dict(job.latent)
    last = progress.last_denoised
    denoised["samples"] = last.to("cpu", torch.float32) if last is not None else output["samples"]
    return output, denoised
