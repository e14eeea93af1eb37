"""What LoraLoader and LoraLoaderModelOnly share: a LoRA file checked against the models it patches.

A LoRA becomes a `LoraPatch` on the model reference (no module is touched; the model manager
merges it inside its `use` scopes). The file is checked here, at the node, against the weight
names of the model it is for, so a LoRA for another model fails at its loader node, with the
layout it was recognised as and the names the model expected. This module declares no nodes.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from engine.node_api import NodeContext
from modeling.errors import ModelFileError
from modeling.lora import LoraFile, LoraFormatError, LoraMatch, LoraPatch, parameter_shapes, read_lora
from modeling.model_refs import ModelRef, WeightsSource
from nodes.loaders._files import model_fingerprint, resolve_model_file, validate_model_name

FOLDER = "loras"

log = logging.getLogger(__name__)


def lora_fingerprint(ctx: NodeContext, lora_name: str | None = None) -> str | float:
    return model_fingerprint(ctx, FOLDER, lora_name)


def validate_lora_name(ctx: NodeContext, lora_name: str | None = None) -> bool | str:
    return validate_model_name(ctx, FOLDER, lora_name)


@dataclass(frozen=True)
class LoraTarget:
    """One reference a LoRA should patch, at `strength`."""

    reference: ModelRef
    strength: float


def apply_lora(ctx: NodeContext, node: str, lora_name: str, targets: list[LoraTarget]) -> list[ModelRef]:
    """Each target's reference with the LoRA patch added where its strength is not 0 and the LoRA changes
    something; a ValueError naming `node` when the file is unreadable or changes none of the targets."""
    if all(target.strength == 0 for target in targets):
        return [target.reference for target in targets]  # nothing to merge: the file is not even read
    path = resolve_model_file(ctx, node, "lora_name", FOLDER, lora_name)
    source = WeightsSource(str(path), str(model_fingerprint(ctx, FOLDER, lora_name)))
    try:
        lora = read_lora(path)
        # Every target is checked, also one at strength 0: the error is for a LoRA that fits none of them.
        matches = [_match(ctx, lora, target.reference, lora_name) for target in targets]
        if not any(match.changes for match in matches):
            matches[0].require_changes(lora_name)  # raises, naming the layout and the expected names
    except (LoraFormatError, ModelFileError) as error:
        detail = str(error).replace(str(path), lora_name).removeprefix(f"{lora_name}: ")
        raise ValueError(f"{node}: lora_name {lora_name!r}: {detail}") from None
    patched = []
    for target, match in zip(targets, matches, strict=True):
        reference = target.reference
        if match.changes and target.strength != 0:
            if match.unmatched:  # ComfyUI's "lora key not loaded": worth a warning, not a failure
                log.warning("%s: %s: %d LoRA layers have no weight in the %s and are skipped (e.g. %s)", node,
                            lora_name, len(match.unmatched), reference.component.replace("_", " "),
                            ", ".join(match.unmatched[:3]))
            reference = reference.patched(LoraPatch(source, float(target.strength), reference.component,
                                                    label=lora_name))
        patched.append(reference)
    return patched


def _match(ctx: NodeContext, lora: LoraFile, reference: ModelRef, label: str) -> LoraMatch:
    """What the LoRA changes in the model `reference` stands for (its weight names and shapes, read from
    the resident base model: loading it now is no extra work, the sampler needs it next)."""
    base = dataclasses.replace(reference, patches=(), sampling=None)
    with ctx.models.use(base) as loaded:
        shapes = parameter_shapes(loaded.module)
    return lora.match(reference.component, shapes, label)
