"""KSamplerSelect: a SAMPLER chosen by name from sampling/samplers.py's registry, with default options."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import Choice, Sampler, node
from sampling.samplers import get_sampler, sampler_names


@node(id="KSamplerSelect", category="sampling/samplers", display="KSamplerSelect")
def ksampler_select(
    sampler_name: Annotated[str, Choice(options=tuple(sampler_names()), tooltip="The sampling algorithm.")],
) -> Sampler:
    """Pick a sampling algorithm for SamplerCustomAdvanced; the Sampler* nodes set its options."""
    return get_sampler(sampler_name)
