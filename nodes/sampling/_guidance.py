"""What KSampler and SamplerCustomAdvanced share: checks, the GUIDER and NOISE objects, one run.

- `require_model` / `prepare_latent` check the MODEL and LATENT inputs; a MODEL is a reference
  (modeling/model_refs.py) that nodes turn into the loaded model with `ctx.models.use(...)`; an
  all-zero latent of the wrong channel count (EmptyLatentImage's 4 channels) is widened to the
  model's, since it carries no content (ComfyUI's fix_empty_latent_channels).
- `Guider` (the GUIDER socket) holds a model reference, checked conditionings and a CFG scale, and
  builds the CFG-guided velocity model of sampling/guidance.py for the loaded model and a batch.
- `SeededNoise` (the NOISE socket) draws the initial noise on the CPU from its seed, so a seed
  gives the same image on any device.
- `run_sampling` (inside the caller's model scope) moves everything to the model's device, runs
  sampling/run.py's `sample`, and
  reports each step through `ProgressReport`: `ctx.progress` with a latent preview when one is
  due (at most 20 a second, and always on the last step); `ctx.progress` raises when the prompt
  is interrupted, which ends sampling between two steps. Stochastic samplers draw their noise
  from a CPU generator seeded with the job's seed, so a seed gives the same image everywhere.
This module declares no nodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from engine.node_api import NodeContext
from modeling.diffusion_model import DiffusionModel
from modeling.model_refs import ModelRef, require_reference
from nodes.latent._latents import require_latent
from nodes.sampling._conditioning import TextCondition, guided_velocity
from nodes.sampling._preview import PreviewPacer, preview_image, preview_projection
from sampling.contract import SamplerFunction, StepInfo, VelocityModel
from sampling.noise import seeded_noise
from sampling.run import sample


def require_model(node: str, name: str, model: Any) -> ModelRef:
    """Raise ValueError unless `model` is a MODEL (a diffusion model reference) from Flowmill's loaders."""
    return require_reference(node, name, model, "diffusion_model")


def prepare_latent(node: str, name: str, latent: Any, model: DiffusionModel) -> dict[str, Any]:
    """A copy of the LATENT whose samples are float32 with the model's channel count."""
    samples = require_latent(node, name, latent)
    if "noise_mask" in latent:
        raise ValueError(f"{node}: {name} carries a noise_mask (inpainting), which the samplers do not support yet")
    channels = model.latent_channels
    if samples.shape[1] != channels:
        if torch.count_nonzero(samples) != 0:
            raise ValueError(
                f"{node}: {name} has {samples.shape[1]} channels but the model works on {channels}-channel latents "
                f"(shape {tuple(samples.shape)}); expected an empty latent or one encoded by this model's VAE"
            )
        batch, _, height, width = samples.shape
        samples = torch.zeros(batch, channels, height, width)
    prepared = dict(latent)
    prepared["samples"] = samples.to(torch.float32)
    return prepared


@dataclass(frozen=True)
class Guider:
    """A GUIDER: the model reference, its checked conditionings and the CFG scale (negative None: no CFG)."""

    model: ModelRef
    positive: tuple[TextCondition, ...]
    negative: tuple[TextCondition, ...] | None
    cfg: float

    def velocity_model(self, model: DiffusionModel, batch: int) -> VelocityModel:
        """The guided velocity of `model`, the module `self.model` stands for, inside its scope."""
        return guided_velocity(model, self.positive, self.negative, batch, self.cfg)


def require_guider(node: str, name: str, guider: Any) -> Guider:
    """Raise ValueError unless `guider` is a GUIDER from CFGGuider or BasicGuider."""
    if not isinstance(guider, Guider):
        raise ValueError(f"{node}: {name} must be a GUIDER from CFGGuider or BasicGuider, got {type(guider).__name__}")
    return guider


@dataclass(frozen=True)
class SeededNoise:
    """A NOISE source: the whole batch drawn on the CPU from one seed (ComfyUI's prepare_noise)."""

    seed: int

    def generate_noise(self, latent: Mapping[str, Any]) -> torch.Tensor:
        samples = latent["samples"]
        return seeded_noise(self.seed, tuple(samples.shape), batch_index=latent.get("batch_index"))


class ProgressReport:
    """A sampler callback that reports each step to the UI and keeps the latest x0 prediction."""

    def __init__(self, ctx: NodeContext, model: DiffusionModel) -> None:
        self.ctx, self.projection, self.pacer = ctx, preview_projection(model), PreviewPacer()
        self.last_denoised: torch.Tensor | None = None

    def __call__(self, step: StepInfo) -> None:
        self.last_denoised = step.denoised
        done = step.index + 1
        preview = preview_image(self.projection, step.denoised) if self.pacer.due(done, step.total) else None
        self.ctx.progress(done, step.total, preview)


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


def run_sampling(ctx: NodeContext, job: SamplingJob, model: DiffusionModel) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sample with `model`, the loaded `job.guider.model` (the caller holds its scope); return (output,
    denoised_output) LATENTs on the CPU, each a copy of job.latent."""
    samples = job.latent["samples"]
    if job.noise.shape != samples.shape:
        raise ValueError(
            f"{job.node}: noise has shape {tuple(job.noise.shape)} but latent_image has {tuple(samples.shape)}"
        )
    _check_refiner(job, model)
    velocity = job.guider.velocity_model(model, samples.shape[0])
    progress = ProgressReport(ctx, model)
    device = model.device
    try:
        result = sample(
            velocity, job.sampler, job.sigmas.to(device, torch.float32), job.noise.to(device, torch.float32),
            samples.to(device), callback=progress, generator=seeded_generator(job.seed),
        )
    except ValueError as error:  # a sampler refusing its options or schedule: name the node
        raise ValueError(f"{job.node}: {error}") from error
    output = dict(job.latent)
    output["samples"] = result.to("cpu", torch.float32)
    denoised = dict(job.latent)
    last = progress.last_denoised
    denoised["samples"] = last.to("cpu", torch.float32) if last is not None else output["samples"]
    return output, denoised
