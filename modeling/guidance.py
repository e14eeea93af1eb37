"""The model-calling glue of guidance: a loaded model and conditionings -> the velocity models samplers see.

- `condition_velocity` / `guided_velocity`: one conditioning list, or real classifier-free
  guidance with a negative, batched into one model call per step when the prompts allow;
- `Guider` (the GUIDER socket) holds a model reference, checked conditionings and a CFG scale, and
  builds the guided velocity of the loaded model inside its `use()` scope;
- `Prompting`, `side_velocity`, `edit_velocities`: the two sides of an edit (source and target
  prompt), for FlowEdit, RF-Edit and RF-Inversion. Guidance-distilled models (FLUX dev, whose
  transformer has `guidance_embeds`) take the scale as their guidance input instead of a negative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from modeling.conditioning import joinable, joined, tiled, unpack_conditioning
from modeling.diffusion_model import DiffusionModel
from modeling.model_refs import ModelRef
from sampling.contract import VelocityModel
from sampling.flowedit import BothVelocities, EditVelocities
from sampling.guidance import batched_cfg_velocity, cfg_velocity


def condition_velocity(model: Any, conditions: tuple[Any, ...], batch: int) -> VelocityModel:
    """The model's velocity under these conditions (the family's objects); several entries average their
    predictions."""
    velocities = []
    for condition in conditions:
        condition = tiled(condition, batch, model.device)

        def velocity(x: torch.Tensor, sigma: torch.Tensor, condition: Any = condition) -> torch.Tensor:
            return model.velocity(x, sigma, condition)

        velocities.append(velocity)
    if len(velocities) == 1:
        return velocities[0]

    # ComfyUI's combined full-image conditions weigh each prediction equally.
    def averaged(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return torch.stack([velocity(x, sigma) for velocity in velocities]).mean(dim=0)

    return averaged


def guided_velocity(model: Any, positive: tuple[Any, ...], negative: tuple[Any, ...] | None,
                    batch: int, cfg: float) -> VelocityModel:
    """The CFG-guided velocity model; one model call per step on a doubled batch when both sides are single prompts
    that can share a batch (the usual case: same token length), else separate calls."""
    if negative is None or math.isclose(cfg, 1.0):
        return condition_velocity(model, positive, batch)  # no unconditional model to evaluate
    if len(positive) == 1 and len(negative) == 1 and joinable((positive[0], negative[0])):
        pair = joined([tiled(side[0], batch, model.device) for side in (positive, negative)])
        return batched_cfg_velocity(condition_velocity(model, (pair,), 2 * batch), cfg)
    return cfg_velocity(condition_velocity(model, positive, batch), condition_velocity(model, negative, batch), cfg)


@dataclass(frozen=True)
class Guider:
    """A GUIDER: the model reference, its checked conditionings and the CFG scale (negative None: no CFG)."""

    model: ModelRef
    positive: tuple[Any, ...]
    negative: tuple[Any, ...] | None
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
class Prompting:
    """One side of an edit: the prompt, its negative (None: no CFG) and the guidance scale."""

    positive: tuple[Any, ...]
    negative: tuple[Any, ...] | None
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
    condition = tiled(prompting.positive[0], batch, model.device)

    def distilled(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return model.velocity(x, sigma, condition, guidance=prompting.cfg)

    return distilled


def edit_velocities(model: DiffusionModel, source: Prompting, target: Prompting, batch: int) -> EditVelocities:
    """Source and target velocity models, and one batched call for both when every prompt is a single entry of one
    token length and the model uses real CFG."""
    return EditVelocities(side_velocity(model, source, batch), side_velocity(model, target, batch),
                          None if guidance_distilled(model) else _batched_both(model, source, target, batch))


def _rows(prompting: Prompting) -> list[Any] | None:
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
    if not joinable(rows):
        return None
    condition = joined([tiled(row, batch, model.device) for row in rows])
    split = len(source_rows)

    def both(z_source: torch.Tensor, z_target: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([z_source] * split + [z_target] * (len(rows) - split))
        outputs = model.velocity(x, sigma.repeat(len(rows)), condition).chunk(len(rows))
        return _guide(outputs[:split], source.cfg), _guide(outputs[split:], target.cfg)

    return both


def _guide(outputs: tuple[torch.Tensor, ...], cfg: float) -> torch.Tensor:
    """`uncond + cfg (cond - uncond)` from (cond, uncond), or cond alone."""
    if len(outputs) == 1:
        return outputs[0]
    cond, uncond = outputs
    return uncond + cfg * (cond - uncond)
