"""RandomNoise: a NOISE source drawn on the CPU from a seed."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import Noise, Seed, node
from modeling.sampling_run import SeededNoise


@node(id="RandomNoise", category="sampling/noise", display="RandomNoise")
def random_noise(
    noise_seed: Annotated[int, Seed(tooltip="The seed of the initial noise; the same seed gives the same image.")],
) -> Noise:
    """Seeded Gaussian noise for SamplerCustomAdvanced (generated on the CPU, so any device agrees)."""
    return SeededNoise(noise_seed)
