"""SamplerEulerAncestral: the stochastic Euler sampler with its noise options (ComfyUI's node of that name)."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import Float, Sampler, node
from sampling.samplers import get_sampler


@node(id="SamplerEulerAncestral", category="sampling/samplers", display="SamplerEulerAncestral")
def sampler_euler_ancestral(
    eta: Annotated[
        float,
        Float(1.0, min=0.0, max=1.0, step=0.01,
              tooltip="How much of each step is fresh noise: 0 is plain Euler, 1 fully ancestral."),
    ],
    s_noise: Annotated[
        float, Float(1.0, min=0.0, max=100.0, step=0.01, tooltip="Scale of the fresh noise.")
    ],
) -> Sampler:
    """Euler ancestral for flow models: every step lands below its sigma and adds fresh seeded noise back."""
    return get_sampler("euler_ancestral", eta=eta, s_noise=s_noise)
