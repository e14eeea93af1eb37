"""LatentUpscale: resize latents to a pixel size, optionally keeping the aspect ratio."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import Choice, Int, Latent, TensorEstimate, node
from nodes.image._pixels import CROP_TOOLTIP, MAX_RESOLUTION, CropMethod
from modeling.latents import require_latent
from nodes.latent._latents import LATENT_SCALE, LatentUpscaleMethod, resize_latent

_NODE = "LatentUpscale"
_SIZE_TOOLTIP = "Target size in pixels (at least 64); 0 derives it from the other side and the aspect ratio."
# ComfyUI's floor on either side, in pixels.
_MIN_SIDE = 64


def _target_size(old_height: int, old_width: int, width: int, height: int) -> tuple[int, int]:
    """The pixel size to resize to: a 0 side follows the aspect ratio, and no side is below 64."""
    if width == 0:
        height = max(_MIN_SIDE, height)
        return max(_MIN_SIDE, round(old_width * height / old_height)), height
    if height == 0:
        width = max(_MIN_SIDE, width)
        return width, max(_MIN_SIDE, round(old_height * width / old_width))
    return max(_MIN_SIDE, width), max(_MIN_SIDE, height)


def _estimate(samples: TensorEstimate, width: int, height: int) -> TensorEstimate | None:
    if len(samples.shape) != 4 or (width == 0 and height == 0):
        return samples if width == 0 and height == 0 else None
    batch, channels, old_height, old_width = samples.shape
    width, height = _target_size(old_height, old_width, width, height)
    return TensorEstimate((batch, channels, height // LATENT_SCALE, width // LATENT_SCALE), samples.itemsize)


@node(id=_NODE, category="latent", display="Upscale Latent", estimate=_estimate)
def latent_upscale(
    samples: Latent,
    upscale_method: Annotated[
        LatentUpscaleMethod,
        Choice(tooltip="bislerp blends latent vectors spherically, which keeps them from washing out."),
    ],
    width: Annotated[int, Int(512, min=0, max=MAX_RESOLUTION, step=8, tooltip=_SIZE_TOOLTIP)],
    height: Annotated[int, Int(512, min=0, max=MAX_RESOLUTION, step=8, tooltip=_SIZE_TOOLTIP)],
    crop: Annotated[CropMethod, Choice(tooltip=CROP_TOOLTIP)],
) -> Latent:
    """Resize latents to a given pixel width and height (in steps of 8 pixels)."""
    latents = require_latent(_NODE, "samples", samples)
    if width == 0 and height == 0:
        return samples
    width, height = _target_size(latents.shape[2], latents.shape[3], width, height)
    resized = dict(samples)
    resized["samples"] = resize_latent(latents, width // LATENT_SCALE, height // LATENT_SCALE, upscale_method, crop)
    return resized
