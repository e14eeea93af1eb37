"""VelocityRefinerLoader: a FlowTurbo velocity refiner from models/velocity_refiners (Flowmill's own node)."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import Choice, NodeContext, VelocityRefiner, node
from modeling.velocity_refiner import load_refiner
from nodes.loaders._files import model_fingerprint, resolve_model_file, validate_model_name

_NODE = "VelocityRefinerLoader"
_FOLDER = "velocity_refiners"


def _fingerprint(ctx: NodeContext, refiner_name: str | None = None) -> str | float:
    return model_fingerprint(ctx, _FOLDER, refiner_name)


def _validate(ctx: NodeContext, refiner_name: str | None = None) -> bool | str:
    return validate_model_name(ctx, _FOLDER, refiner_name)


@node(id=_NODE, category="advanced/loaders", display="Load Velocity Refiner (FlowTurbo)",
      fingerprint=_fingerprint, validate=_validate)
def velocity_refiner_loader(
    ctx: NodeContext,
    refiner_name: Annotated[
        str, Choice(source=_FOLDER, tooltip="A file in models/velocity_refiners, trained for the model you sample.")
    ],
) -> VelocityRefiner:
    """Load a FlowTurbo velocity refiner: the tiny network that stands in for the model in the last steps."""
    path = resolve_model_file(ctx, _NODE, "refiner_name", _FOLDER, refiner_name)
    return load_refiner(path, device=ctx.device, name=refiner_name)
