"""InvertToNoise: run an ODE sampler backwards, turning a latent into the noise that regenerates it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, NamedTuple

import torch

from engine.node_api import Guider, Input, Latent, NodeContext, Noise, Sampler, Sigmas, TensorEstimate, node
from nodes.latent._latents import sampled_estimate
from modeling.guidance import require_guider
from modeling.latents import prepare_latent
from modeling.previews import SamplingProgress
from sampling.inversion import invert, resume_noise
from sampling.samplers import ConfiguredSampler, get_sampler, inversion_refusal

_NODE = "InvertToNoise"
DEFAULT_INVERSION_SAMPLER = "rf_solver"


@dataclass(frozen=True)
class InvertedNoise:
    """A NOISE that resumes sampling from an inverted state: with the latent it is given, it makes
    sampling's starting mix `(1 - sigma) * latent + sigma * noise` equal the state."""

    state: torch.Tensor
    sigma: float

    def generate_noise(self, latent: dict[str, Any]) -> torch.Tensor:
        samples = latent["samples"]
        if samples.shape != self.state.shape:
            raise ValueError(f"the inverted noise has shape {tuple(self.state.shape)} but latent_image has "
                             f"{tuple(samples.shape)}; sample with the latent that was inverted")
        return resume_noise(self.state, samples.to(self.state.dtype), self.sigma)


class Inversion(NamedTuple):
    noise: Noise
    inverted: Latent


def _check_sockets(sampler: object, sigmas: object) -> ConfiguredSampler:
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1:
        raise ValueError(f"{_NODE}: sigmas must be a 1-D SIGMAS tensor (e.g. from BasicScheduler)")
    chosen = get_sampler(DEFAULT_INVERSION_SAMPLER) if sampler is None else sampler
    if not isinstance(chosen, ConfiguredSampler):
        raise ValueError(f"{_NODE}: sampler must be one of Flowmill's samplers (KSamplerSelect or a Sampler* node), "
                         f"got {type(chosen).__name__}")
    refusal = inversion_refusal(chosen)
    if refusal is not None:
        raise ValueError(f"{_NODE}: sampler: {refusal}")
    return chosen


def _estimate(latent_image: TensorEstimate) -> tuple[TensorEstimate | None, TensorEstimate | None]:
    """The inverted noise holds a state of the latent's size; the inverted latent is another."""
    inverted = sampled_estimate(latent_image)
    return inverted, inverted


@node(id=_NODE, category="sampling/custom_sampling", display="Invert to Noise (ODE inversion)", estimate=_estimate)
def invert_to_noise(
    ctx: NodeContext,
    guider: Annotated[Guider, Input(tooltip="The model and the source prompt (usually cfg 1 and the source caption).")],
    sigmas: Annotated[
        Sigmas, Input(tooltip="The denoising schedule to undo (BasicScheduler); below denoise 1, a partial inversion. "
                              "Fine steps near sigma 0 invert far more accurately: put ModelSamplingSD3 with "
                              "shift 0.5 before the scheduler.")
    ],
    latent_image: Annotated[Latent, Input(tooltip="The clean latent to invert (VAEEncode).")],
    sampler: Annotated[
        Sampler, Input(tooltip="An ODE sampler (default rf_solver, which inverts most exactly).")
    ] = None,
) -> Inversion:
    """Integrate the flow ODE from the latent up to the schedule's first sigma (noise: regenerates it)."""
    guider = require_guider(_NODE, "guider", guider)
    chosen = _check_sockets(sampler, sigmas)
    with ctx.models.use(guider.model) as model:
        latent = prepare_latent(_NODE, "latent_image", latent_image, model)
        samples = latent["samples"]
        try:
            state = invert(guider.velocity_model(model, samples.shape[0]), chosen,
                           sigmas.to(model.device, torch.float32), samples.to(model.device),
                           callback=SamplingProgress(ctx.progress, model))
        except ValueError as error:
            raise ValueError(f"{_NODE}: {error}") from error
    state = state.to("cpu", torch.float32)
    inverted = dict(latent)
    inverted["samples"] = state
    return Inversion(InvertedNoise(state, float(sigmas[0])), inverted)
