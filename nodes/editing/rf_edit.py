"""RFEdit: RF-Solver inversion and regeneration that shares attention values between the two passes."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import Choice, Conditioning, Float, Input, Int, Latent, Model, NodeContext, String, node
from modeling.feature_sharing import FeatureBank, ValueSharing, ValueSharingPatch, parse_blocks, single_blocks
from modeling.editing import edit_schedule, finished, inverting_edit
from modeling.model_refs import require_model
from modeling.previews import EditProgress
from sampling.rf_edit import check_inject, rf_edit

_NODE = "RFEdit"
BANK_DEVICES = ("cpu", "model device")


@node(id=_NODE, category="editing", display="RF-Edit (inversion with feature sharing)")
def rf_edit_node(
    ctx: NodeContext,
    model: Model,
    source_positive: Annotated[Conditioning, Input(tooltip="Describes the source image; inversion runs at cfg 1.")],
    target_positive: Annotated[Conditioning, Input(tooltip="Describes the edited image.")],
    target_negative: Annotated[Conditioning, Input(tooltip="The target side's negative prompt (usually empty).")],
    latent_image: Annotated[Latent, Input(tooltip="The source image's latent (VAEEncode).")],
    steps: Annotated[int, Int(25, min=1, max=1000, tooltip="RF-Solver steps each way (2 model calls each).")],
    inject: Annotated[
        int,
        Int(5, min=0, max=1000,
            tooltip="The noisiest steps that share the source's attention values: more keeps more of the source."),
    ],
    target_cfg: Annotated[float, Float(4.0, min=0.0, max=100.0, step=0.1, round=0.01,
                                       tooltip="Guidance scale of the target prompt.")],
    blocks: Annotated[
        str,
        String("auto", tooltip="Single-stream blocks that share values: 'auto' is the paper's FLUX choice (20-37 of "
                               "38) scaled to the model; or a list such as '2, 3' or '20-37'."),
    ],
    feature_bank: Annotated[
        str, Choice(options=BANK_DEVICES, tooltip="Where stored features wait: cpu saves GPU memory.")
    ],
) -> Latent:
    """Edit a latent with RF-Edit (Wang et al., ICML 2025): invert, storing values; denoise, injecting them."""
    reference = require_model(_NODE, "model", model)
    with ctx.models.use(reference) as loaded:  # the model's block count and device decide the settings
        try:
            check_inject(inject, steps)
            chosen = parse_blocks(blocks, len(single_blocks(loaded.module)))
        except ValueError as error:
            raise ValueError(f"{_NODE}: {error}") from error
        bank_device = "cpu" if feature_bank == "cpu" else loaded.device
    sharing = ValueSharing(FeatureBank(bank_device))
    # The processors exist only inside this scope: the model manager installs them and takes them out.
    with ctx.models.use(reference.patched(ValueSharingPatch(chosen, sharing))) as loaded:
        edit = inverting_edit(_NODE, loaded, source_positive, target_positive, target_negative, target_cfg,
                              latent_image)
        progress = EditProgress(ctx.progress, loaded, (steps, steps))
        edited = rf_edit(edit.source, edit.target, edit.samples, edit_schedule(loaded, steps), inject=inject,
                         sharing=sharing, inversion_callback=progress.phase(0), callback=progress.phase(1))
        return finished(edit.latent, edited)
