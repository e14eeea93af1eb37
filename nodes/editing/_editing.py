"""What the editor nodes share: prompts to velocity models, the source latent, the schedule, progress.

An editor runs the model under two prompts: the source prompt, describing the image as it is,
and the target prompt, describing the edit. `Prompting` is one side (positive, optional negative,
CFG scale), `side_velocity` its velocity model, and `edit_velocities` both sides for FlowEdit,
batched into one model call when the prompts allow; `inverting_edit` checks the inputs of the
editors that invert first (RF-Edit, RF-Inversion). Guidance-distilled models (FLUX dev, whose
transformer has `guidance_embeds`) take the scale as their guidance input instead of running a
negative. `EditProgress` reports an editor's phases (inversion, then denoising) as one bar.
This module declares no nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from engine.node_api import NodeContext
from modeling.diffusion_model import DiffusionModel
from nodes.sampling._conditioning import (
    TextCondition,
    condition_velocity,
    guided_velocity,
    tile_to_batch,
    unpack_conditioning,
)
from nodes.sampling._guidance import ProgressReport, prepare_latent
from sampling.contract import StepCallback, StepInfo, VelocityModel
from sampling.flowedit import BothVelocities, EditVelocities
from sampling.schedules import compute_sigmas


@dataclass(frozen=True)
class Prompting:
    """One side of an edit: the prompt, its negative (None: no CFG) and the guidance scale."""

    positive: tuple[TextCondition, ...]
    negative: tuple[TextCondition, ...] | None
    cfg: float

    @classmethod
    def checked(cls, node: str, side: str, model: DiffusionModel, positive: Any, negative: Any,
                cfg: float) -> Prompting:
        """Check the CONDITIONING inputs `<side>_positive` / `<side>_negative` (negative may be None)."""
        return cls(unpack_conditioning(node, f"{side}_positive", positive, model),
                   None if negative is None else unpack_conditioning(node, f"{side}_negative", negative, model),
                   cfg)


def guidance_distilled(model: DiffusionModel) -> bool:
    """True for transformers that take the guidance scale as an input (FLUX dev)."""
    config = getattr(model.module, "config", None)
    return bool(getattr(config, "guidance_embeds", False))


def side_velocity(model: DiffusionModel, prompting: Prompting, batch: int) -> VelocityModel:
    """The velocity model of one side: real CFG, or the scale as guidance input for a distilled model."""
    if not guidance_distilled(model):
        return guided_velocity(model, prompting.positive, prompting.negative, batch, prompting.cfg)
    if len(prompting.positive) != 1:
        return condition_velocity(model, prompting.positive, batch)
    condition = prompting.positive[0]

    def distilled(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return model.velocity(x, sigma, tile_to_batch(condition.context, batch, model.device),
                              tile_to_batch(condition.pooled, batch, model.device), guidance=prompting.cfg)

    return distilled


def edit_velocities(model: DiffusionModel, source: Prompting, target: Prompting, batch: int) -> EditVelocities:
    """Source and target velocity models, and one batched call for both when every prompt is a single entry of one
    token length and the model uses real CFG."""
    return EditVelocities(side_velocity(model, source, batch), side_velocity(model, target, batch),
                          None if guidance_distilled(model) else _batched_both(model, source, target, batch))


def _rows(prompting: Prompting) -> list[TextCondition] | None:
    """The conditions one side evaluates, positive first, or None when they cannot join a batch."""
    guided = prompting.negative is not None and not math.isclose(prompting.cfg, 1.0)
    sides = [prompting.positive] + ([prompting.negative] if guided else [])
    if any(side is None or len(side) != 1 for side in sides):
        return None
    return [side[0] for side in sides if side is not None]


def _batched_both(model: DiffusionModel, source: Prompting, target: Prompting, batch: int) -> BothVelocities | None:
    source_rows, target_rows = _rows(source), _rows(target)
    if source_rows is None or target_rows is None:
        return None
    rows = source_rows + target_rows
    if len({row.context.shape[1:] for row in rows}) != 1:
        return None
    context = torch.cat([tile_to_batch(row.context, batch, model.device) for row in rows])
    pooled = torch.cat([tile_to_batch(row.pooled, batch, model.device) for row in rows])
    split = len(source_rows)

    def both(z_source: torch.Tensor, z_target: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([z_source] * split + [z_target] * (len(rows) - split))
        outputs = model.velocity(x, sigma.repeat(len(rows)), context, pooled).chunk(len(rows))
        return _guide(outputs[:split], source.cfg), _guide(outputs[split:], target.cfg)

    return both


def _guide(outputs: tuple[torch.Tensor, ...], cfg: float) -> torch.Tensor:
    """`uncond + cfg (cond - uncond)` from (cond, uncond), or cond alone."""
    if len(outputs) == 1:
        return outputs[0]
    cond, uncond = outputs
    return uncond + cfg * (cond - uncond)


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


class EditProgress:
    """Reports the phases of an edit (e.g. inversion then denoising) as one progress bar with previews."""

    def __init__(self, ctx: NodeContext, model: DiffusionModel, phase_steps: tuple[int, ...]) -> None:
        self._report = ProgressReport(ctx, model)
        self._offsets = [sum(phase_steps[:index]) for index in range(len(phase_steps))]
        self._total = sum(phase_steps)

    def phase(self, index: int) -> StepCallback:
        offset = self._offsets[index]

        def callback(step: StepInfo) -> None:
            self._report(StepInfo(offset + step.index, self._total, step.x, step.sigma, step.sigma_next,
                                  step.denoised))

        return callback


def finished(latent: dict[str, Any], samples: torch.Tensor) -> dict[str, Any]:
    """A copy of the input LATENT carrying the edited samples, on the CPU."""
    output = dict(latent)
    output["samples"] = samples.to("cpu", torch.float32)
    return output
