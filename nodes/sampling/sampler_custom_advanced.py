"""SamplerCustomAdvanced: sampling assembled from NOISE, GUIDER, SAMPLER and SIGMAS sockets."""

from __future__ import annotations

from typing import Annotated, NamedTuple

import torch

from engine.node_api import Guider, Input, Latent, NodeContext, Noise, Sampler, Sigmas, TensorEstimate, node
from nodes.latent._latents import sampled_estimate
from modeling.guidance import require_guider
from modeling.latents import prepare_latent
from modeling.sampling_run import SamplingJob, run_sampling

_NODE = "SamplerCustomAdvanced"


class SampledLatents(NamedTuple):
    output: Latent
    denoised_output: Latent


def _check_sockets(noise: object, guider: object, sampler: object, sigmas: object) -> None:
    if not callable(getattr(noise, "generate_noise", None)):
        raise ValueError(f"{_NODE}: noise must be a NOISE (e.g. from RandomNoise), got {type(noise).__name__}")
    require_guider(_NODE, "guider", guider)
    if not callable(sampler):
        raise ValueError(f"{_NODE}: sampler must be a SAMPLER (e.g. from KSamplerSelect), got {type(sampler).__name__}")
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1:
        shape = tuple(sigmas.shape) if isinstance(sigmas, torch.Tensor) else type(sigmas).__name__
        raise ValueError(f"{_NODE}: sigmas must be a 1-D SIGMAS tensor (e.g. from BasicScheduler), got {shape}")


def _estimate(latent_image: TensorEstimate) -> tuple[TensorEstimate | None, TensorEstimate | None]:
    sampled = sampled_estimate(latent_image)
    return sampled, sampled


@node(id=_NODE, category="sampling/custom_sampling", display="SamplerCustomAdvanced", estimate=_estimate)
def sampler_custom_advanced(
    ctx: NodeContext,
    noise: Annotated[Noise, Input(tooltip="The initial noise (RandomNoise).")],
    guider: Annotated[Guider, Input(tooltip="The model and its guidance (CFGGuider, BasicGuider).")],
    sampler: Annotated[Sampler, Input(tooltip="The sampling algorithm (KSamplerSelect).")],
    sigmas: Annotated[Sigmas, Input(tooltip="The noise levels to step through (BasicScheduler).")],
    latent_image: Annotated[Latent, Input(tooltip="The latent to denoise.")],
) -> SampledLatents:
    """Denoise a latent; also returns the model's last clean-image prediction as denoised_output."""
    _check_sockets(noise, guider, sampler, sigmas)
    with ctx.models.use(guider.model) as model:
        latent = prepare_latent(_NODE, "latent_image", latent_image, model)
        # ComfyUI seeds a stochastic sampler's fresh noise with the NOISE input's seed.
        seed = getattr(noise, "seed", 0)
        job = SamplingJob(_NODE, guider, sampler, sigmas, noise.generate_noise(latent), latent, seed=seed)
        output, denoised = run_sampling(ctx.progress, job, model)
    return SampledLatents(output, denoised)
