"""FlowEdit: inversion-free editing of a source latent from a source prompt to a target prompt."""

from __future__ import annotations

from typing import Annotated

import torch

from engine.node_api import Choice, Conditioning, Float, Input, Int, Latent, Model, NodeContext, Seed, node
from modeling.editing import edit_schedule, finished, source_latent
from modeling.guidance import Prompting, edit_velocities
from modeling.model_refs import require_model
from modeling.previews import EditProgress
from sampling.flowedit import FLOWEDIT_DEFAULTS, FlowEditSettings, flowedit

_NODE = "FlowEdit"
WIDGETS = "widgets"


@node(id=_NODE, category="editing", display="FlowEdit (inversion-free editing)")
def flow_edit(
    ctx: NodeContext,
    model: Model,
    source_positive: Annotated[Conditioning, Input(tooltip="Describes the source image as it is.")],
    source_negative: Annotated[Conditioning, Input(tooltip="The source side's negative prompt (usually empty).")],
    target_positive: Annotated[Conditioning, Input(tooltip="Describes the edited image.")],
    target_negative: Annotated[Conditioning, Input(tooltip="The target side's negative prompt (usually empty).")],
    latent_image: Annotated[Latent, Input(tooltip="The source image's latent (VAEEncode).")],
    preset: Annotated[
        str,
        Choice(options=(WIDGETS, *FLOWEDIT_DEFAULTS),
               tooltip="'widgets' uses the values below; a model family's name uses the published defaults "
                       "(sd3: SD3-like, flux: FLUX dev, demo: the shipped demo model) instead of them; the seed "
                       "below applies either way."),
    ],
    steps: Annotated[int, Int(28, min=1, max=1000, tooltip="Length of the schedule (the model's own shift).")],
    n_max: Annotated[
        int, Int(12, min=0, max=1000, tooltip="Edit during the last n_max steps: more changes more of the image.")
    ],
    n_min: Annotated[
        int, Int(0, min=0, max=1000, tooltip="The last n_min steps sample with the target prompt only (SDEdit-like).")
    ],
    n_avg: Annotated[
        int, Int(1, min=1, max=64, tooltip="Noise draws averaged per step: smoother edits, n_avg times the calls.")
    ],
    source_cfg: Annotated[float, Float(3.5, min=0.0, max=100.0, step=0.1, round=0.01,
                                       tooltip="Guidance scale of the source prompt.")],
    target_cfg: Annotated[float, Float(6.0, min=0.0, max=100.0, step=0.1, round=0.01,
                                       tooltip="Guidance scale of the target prompt.")],
    seed: Annotated[int, Seed(tooltip="Seeds the fresh noise drawn at every step.")],
) -> Latent:
    """Edit a latent by the difference between target- and source-prompt velocities (Kulikov et al., ICCV 2025)."""
    reference = require_model(_NODE, "model", model)
    with ctx.models.use(reference) as loaded:
        if preset == WIDGETS:
            try:
                settings = FlowEditSettings(steps, n_max, n_min, n_avg, source_cfg, target_cfg, seed)
            except ValueError as error:
                raise ValueError(f"{_NODE}: {error}") from error
        else:
            settings = FLOWEDIT_DEFAULTS[preset]
        source = Prompting.checked(_NODE, "source", loaded, source_positive, source_negative, settings.source_cfg)
        target = Prompting.checked(_NODE, "target", loaded, target_positive, target_negative, settings.target_cfg)
        latent, samples = source_latent(_NODE, latent_image, loaded)
        progress = EditProgress(ctx.progress, loaded, (settings.n_max,))
        edited = flowedit(
            edit_velocities(loaded, source, target, samples.shape[0]), samples, edit_schedule(loaded, settings.steps),
            n_max=settings.n_max, n_min=settings.n_min, n_avg=settings.n_avg,
            generator=torch.Generator("cpu").manual_seed(seed), callback=progress.phase(0),
        )
        return finished(latent, edited)
