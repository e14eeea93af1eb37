"""RFInversionEdit: RF-Inversion's controlled forward and reverse ODEs as one editing node."""

from __future__ import annotations

from typing import Annotated

import torch

from engine.node_api import Conditioning, Float, Input, Int, Latent, Model, NodeContext, Seed, node
from modeling.editing import edit_schedule, finished, inverting_edit
from modeling.model_refs import require_model
from modeling.previews import EditProgress
from sampling.rf_inversion import RFInversionSettings, rf_inversion_edit

_NODE = "RFInversionEdit"


@node(id=_NODE, category="editing", display="RF-Inversion (controlled ODE editing)")
def rf_inversion_node(
    ctx: NodeContext,
    model: Model,
    source_positive: Annotated[
        Conditioning, Input(tooltip="Describes the source image (the paper uses the empty prompt); inverted at cfg 1.")
    ],
    target_positive: Annotated[Conditioning, Input(tooltip="Describes the edited image.")],
    target_negative: Annotated[Conditioning, Input(tooltip="The target side's negative prompt (usually empty).")],
    latent_image: Annotated[Latent, Input(tooltip="The source image's latent (VAEEncode).")],
    steps: Annotated[int, Int(28, min=1, max=1000, tooltip="Steps each way (1 model call each).")],
    gamma: Annotated[float, Float(0.5, min=0.0, max=1.0, step=0.01,
                                  tooltip="Inversion's pull towards a fixed noise: higher is more editable.")],
    eta: Annotated[float, Float(0.9, min=0.0, max=1.0, step=0.01,
                                tooltip="Regeneration's pull back towards the source: higher is more faithful.")],
    start: Annotated[float, Float(0.0, min=0.0, max=1.0, step=0.01,
                                  tooltip="Share of the steps where the pull towards the source starts.")],
    stop: Annotated[float, Float(0.25, min=0.0, max=1.0, step=0.01,
                                 tooltip="Share of the steps where it stops: later keeps more of the source.")],
    target_cfg: Annotated[float, Float(4.0, min=0.0, max=100.0, step=0.1, round=0.01,
                                       tooltip="Guidance scale of the target prompt.")],
    seed: Annotated[int, Seed(tooltip="Seeds the fixed noise the inversion is steered towards.")],
) -> Latent:
    """Edit a latent with RF-Inversion (Rout et al., ICLR 2025): controlled inversion, then controlled regeneration."""
    reference = require_model(_NODE, "model", model)
    with ctx.models.use(reference) as loaded:
        try:
            settings = RFInversionSettings(gamma=gamma, eta=eta, start=start, stop=stop)
        except ValueError as error:
            raise ValueError(f"{_NODE}: {error}") from error
        edit = inverting_edit(_NODE, loaded, source_positive, target_positive, target_negative, target_cfg,
                              latent_image)
        progress = EditProgress(ctx.progress, loaded, (steps, steps))
        edited = rf_inversion_edit(
            edit.source, edit.target, edit.samples, edit_schedule(loaded, steps), settings,
            generator=torch.Generator("cpu").manual_seed(seed), inversion_callback=progress.phase(0),
            callback=progress.phase(1),
        )
        return finished(edit.latent, edited)
