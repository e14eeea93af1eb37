"""Zero terminal SNR (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed").

A discrete VP table normally leaves some signal at its noisiest timestep; rescaling `sqrt(alpha_bar)`
linearly so that it reaches zero there (keeping its first value) lets a model trained that way start from
pure noise. A table cannot hold sigma infinity, so the final `alpha_bar` becomes a tiny positive value,
the one ComfyUI's ModelSamplingDiscrete uses (its `zsnr` switch), which puts the top sigma near 4500.
ComfyUI rescales its float32 sigma table in float32; this does the same, so both give the same sigmas.
Imports nothing outside torch.
"""

from __future__ import annotations

from sampling.discrete_vp import DiscreteVP

# ComfyUI's stand-in for alpha_bar = 0 at the last timestep.
TERMINAL_ALPHA_BAR = 4.8973451890853435e-08


def zero_terminal_snr(schedule: DiscreteVP) -> DiscreteVP:
    """The same model (prediction kept) on its table rescaled to (almost) zero signal at the last timestep."""
    sigmas = schedule.sigmas.float()  # the table as ComfyUI holds it
    root = (1 / (sigmas * sigmas + 1)).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * (first / (first - last))
    alpha_bar = root**2
    alpha_bar[-1] = TERMINAL_ALPHA_BAR
    rescaled = ((1 - alpha_bar) / alpha_bar).sqrt()  # float32 sigmas, as ComfyUI's set_sigmas stores them
    wide = rescaled.double()
    return DiscreteVP(1 / (1 + wide * wide), schedule.prediction)
