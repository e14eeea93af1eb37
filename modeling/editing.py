"""The editors' model glue: the source latent, the inverting editors' inputs, the schedule, the result.

An editor runs the model under two prompts (modeling/guidance.py `Prompting`); the editors that
invert first (RF-Edit, RF-Inversion) invert with the source prompt unguided and regenerate with the
target's (`inverting_edit`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from modeling.diffusion_model import DiffusionModel
from modeling.guidance import Prompting, side_velocity
from modeling.latents import prepare_latent
from sampling.contract import VelocityModel
from sampling.schedules import compute_sigmas


def source_latent(node: str, latent: Any, model: DiffusionModel) -> tuple[dict[str, Any], torch.Tensor]:
    """The LATENT input (copied) and its samples on the model's device, float32."""
    prepared = prepare_latent(node, "latent_image", latent, model)
    samples = prepared["samples"]
    if not torch.count_nonzero(samples):
        raise ValueError(f"{node}: latent_image is all zeros; editors need the source image's latent (VAEEncode)")
    return prepared, samples.to(model.device)


@dataclass(frozen=True)
class InvertingEdit:
    """The inputs of an editor that inverts with the source prompt (unguided) and regenerates with the target's."""

    latent: dict[str, Any]
    samples: torch.Tensor
    source: VelocityModel
    target: VelocityModel


def inverting_edit(node: str, model: DiffusionModel, source_positive: Any, target_positive: Any,
                   target_negative: Any, target_cfg: float, latent_image: Any) -> InvertingEdit:
    """Check the inputs of RF-Edit and RF-Inversion; inversion runs at cfg 1, as both references do."""
    source = Prompting.checked(node, "source", model, source_positive, None, 1.0)
    target = Prompting.checked(node, "target", model, target_positive, target_negative, target_cfg)
    latent, samples = source_latent(node, latent_image, model)
    batch = samples.shape[0]
    return InvertingEdit(latent, samples, side_velocity(model, source, batch), side_velocity(model, target, batch))


def edit_schedule(model: DiffusionModel, steps: int) -> torch.Tensor:
    """The model's "simple" schedule (its own shift) of `steps` steps, on its device."""
    return compute_sigmas(model.sampling, "simple", steps).to(model.device)


def finished(latent: dict[str, Any], samples: torch.Tensor) -> dict[str, Any]:
    """A copy of the input LATENT carrying the edited samples, on the CPU."""
    output = dict(latent)
    output["samples"] = samples.to("cpu", torch.float32)
    return output
