"""KSampler: seeded noise, a scheduler's sigmas and a CFG sampler in one node."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import (
    Choice,
    Conditioning,
    Float,
    Input,
    Int,
    Latent,
    Model,
    NodeContext,
    Seed,
    TensorEstimate,
    node,
)
from nodes.latent._latents import sampled_estimate
from modeling.conditioning import unpack_conditioning
from modeling.guidance import Guider
from modeling.latents import prepare_latent
from modeling.model_refs import require_model
from modeling.sampling_run import SamplingJob, SeededNoise, run_sampling
from sampling.samplers import get_sampler, sampler_names
from sampling.schedules import compute_sigmas, scheduler_names

_NODE = "KSampler"


def _estimate(latent_image: TensorEstimate) -> TensorEstimate | None:
    return sampled_estimate(latent_image)


@node(id=_NODE, category="sampling", display="KSampler", estimate=_estimate)
def ksampler(
    ctx: NodeContext,
    model: Annotated[Model, Input(tooltip="The model used for denoising the input latent.")],
    seed: Annotated[int, Seed(tooltip="The random seed used for creating the noise.")],
    steps: Annotated[int, Int(20, min=1, max=10000, tooltip="The number of denoising steps.")],
    cfg: Annotated[
        float,
        Float(8.0, min=0.0, max=100.0, step=0.1, round=0.01,
              tooltip="Classifier-free guidance scale: higher follows the prompt more closely; 1 skips the negative."),
    ],
    sampler_name: Annotated[str, Choice(options=tuple(sampler_names()), tooltip="The sampling algorithm.")],
    scheduler: Annotated[str, Choice(options=tuple(scheduler_names()), tooltip="How the noise levels are spaced.")],
    positive: Annotated[Conditioning, Input(tooltip="What the image should contain.")],
    negative: Annotated[Conditioning, Input(tooltip="What the image should not contain.")],
    latent_image: Annotated[Latent, Input(tooltip="The latent to denoise.")],
    denoise: Annotated[
        float,
        Float(1.0, min=0.0, max=1.0, step=0.01, tooltip="Below 1 keeps the input latent's structure (img2img)."),
    ],
) -> Latent:
    """Denoise a latent with the model, guided by the positive and negative conditioning."""
    reference = require_model(_NODE, "model", model)
    with ctx.models.use(reference) as loaded:
        latent = prepare_latent(_NODE, "latent_image", latent_image, loaded)
        guider = Guider(
            reference,
            unpack_conditioning(_NODE, "positive", positive, loaded),
            unpack_conditioning(_NODE, "negative", negative, loaded),
            cfg,
        )
        job = SamplingJob(
            node=_NODE,
            guider=guider,
            sampler=get_sampler(sampler_name),
            sigmas=compute_sigmas(loaded.sampling, scheduler, steps, denoise),
            noise=SeededNoise(seed).generate_noise(latent),
            latent=latent,
            seed=seed,
        )
        output, _ = run_sampling(ctx.progress, job, loaded)
    return output
