"""Progress reports with latent previews, for everything that samples (sampler and editor nodes).

A preview is the current x0 prediction projected to RGB by a `LatentPreview`: the model's
fitted one when it has one (the checkpoint loader copies it from the VAE), else
`LatentPreview.generic`, which needs no fitting. Either is one small matrix product per latent
pixel, so a preview per step costs nothing next to a model call. The executor passes the PIL
image on as a `NodePreview` event, which the server sends as a binary JPEG frame.
`SamplingProgress` turns a sampler's per-step callback into `report(done, total, preview)` calls
(a node passes `ctx.progress`, which also raises when the prompt is interrupted, ending sampling
between two steps); `EditProgress` reports an editor's phases as one bar.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image as PILImage

from modeling.diffusion_model import DiffusionModel
from modeling.latent_preview import LatentPreview
from sampling.contract import StepCallback, StepInfo

# What a progress report goes to: (steps done, steps in all, a PIL preview or None).
Reporter = Callable[[float, float, Any], None]


def preview_projection(model: DiffusionModel) -> LatentPreview:
    """The model's own latent-to-RGB map, or the generic one for its channel count."""
    return model.latent_preview or LatentPreview.generic(model.latent_channels)


# Previews are shown at image size (8 pixels per latent pixel), capped as ComfyUI caps them, so a
# large latent never costs a multi-megapixel JPEG per step.
PREVIEW_UPSCALE = 8
MAX_PREVIEW_SIDE = 512


def preview_image(projection: LatentPreview, denoised: torch.Tensor) -> PILImage.Image:
    """A PIL image of the first item of `denoised` ([B, C, h, w]) at about the decoded image's size.

    A video latent [B, C, T, h, w] previews its first frame: Wan's VAE encodes that frame on its own,
    so it reads as an image where later latent frames each mix four video frames.
    """
    if denoised.ndim == 5:
        denoised = denoised[:, :, 0]
    small = PILImage.fromarray(np.ascontiguousarray(projection.to_rgb(denoised)))
    scale = min(PREVIEW_UPSCALE, MAX_PREVIEW_SIDE / max(small.size))
    size = (max(1, round(small.width * scale)), max(1, round(small.height * scale)))
    return small.resize(size, PILImage.Resampling.BILINEAR) if scale > 1 else small


# Previews at most this often: 20 a second is smooth to a viewer, and on a small model stepping
# every few milliseconds a preview per step would cost more than a tenth of the run.
MIN_PREVIEW_INTERVAL_S = 0.05


class PreviewPacer:
    """Says whether a step's preview is due: the first step, the last, and then at most one per
    `interval` seconds. Progress itself is still reported every step."""

    def __init__(self, interval: float = MIN_PREVIEW_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval, self.clock = interval, clock
        self.last: float | None = None

    def due(self, step: int, total: int) -> bool:
        now = self.clock()
        if self.last is None or step == total or now - self.last >= self.interval:
            self.last = now
            return True
        return False


class SamplingProgress:
    """A sampler callback that reports each step to the UI and keeps the latest x0 prediction."""

    def __init__(self, report: Reporter, model: DiffusionModel) -> None:
        self.report, self.projection, self.pacer = report, preview_projection(model), PreviewPacer()
        self.last_denoised: torch.Tensor | None = None

    def __call__(self, step: StepInfo) -> None:
        self.last_denoised = step.denoised
        done = step.index + 1
        preview = preview_image(self.projection, step.denoised) if self.pacer.due(done, step.total) else None
        self.report(done, step.total, preview)


class EditProgress:
    """Reports the phases of an edit (e.g. inversion then denoising) as one progress bar with previews."""

    def __init__(self, report: Reporter, model: DiffusionModel, phase_steps: tuple[int, ...]) -> None:
        self._report = SamplingProgress(report, model)
        self._offsets = [sum(phase_steps[:index]) for index in range(len(phase_steps))]
        self._total = sum(phase_steps)

    def phase(self, index: int) -> StepCallback:
        offset = self._offsets[index]

        def callback(step: StepInfo) -> None:
            self._report(StepInfo(offset + step.index, self._total, step.x, step.sigma, step.sigma_next,
                                  step.denoised))

        return callback
