"""Which kind of noise schedule a MODEL reference samples with, for the nodes that set one.

ModelSamplingSD3 and ModelSamplingFlux shift a flow model's time; ModelSamplingDiscrete sets a discrete
VP model's prediction. Each makes sense for one kind only, and a shift on a VP model (or eps on a flow
model) would sample garbage without failing, so these checks refuse it at the node, naming the family.
The kind is the family's (modeling/families.py), known from the reference without loading weights.
"""

from __future__ import annotations

from typing import Any

from modeling.families import FAMILIES
from modeling.model_refs import ModelRef, require_model
from sampling.discrete_vp import DiscreteVP
from sampling.flow import FlowSampling

_FLOW_NODES = "ModelSamplingSD3 or ModelSamplingFlux"
_VP_NODES = "ModelSamplingDiscrete"


def require_flow_model(node: str, name: str, value: Any) -> ModelRef:
    """`value` unless it is a MODEL whose family is known not to sample by flow time (then a ValueError naming
    node, input and family)."""
    reference = require_model(node, name, value)
    sampling = _family_sampling(reference)
    if sampling is not None and not isinstance(sampling, FlowSampling):
        raise ValueError(f"{node}: {name} is a {_family(reference)} model, a discrete VP (eps / v prediction) model "
                         f"whose noise levels cannot be shifted; {node} applies to flow models (FLUX, SD3). "
                         f"Set a VP model's prediction with {_VP_NODES}")
    return reference


def require_vp_model(node: str, name: str, value: Any) -> tuple[ModelRef, DiscreteVP]:
    """(the MODEL, its family's VP table) when `value` is a discrete VP model, else a ValueError naming node,
    input and family."""
    reference = require_model(node, name, value)
    sampling = _family_sampling(reference)
    if not isinstance(sampling, DiscreteVP):
        raise ValueError(f"{node}: {name} is a {_family(reference)} model, a flow model that predicts the velocity "
                         f"itself; {node} applies to discrete VP models (SD1.x, SD2.x, SDXL). Shift a flow "
                         f"model's schedule with {_FLOW_NODES}")
    return reference, sampling


def _family_sampling(reference: ModelRef) -> Any:
    family = FAMILIES.get(reference.family)
    return None if family is None else family.sampling


def _family(reference: ModelRef) -> str:
    return repr(reference.family) if reference.family else "model of unknown family"
