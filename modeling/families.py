"""The typed table of model families: what identifies each architecture and how to build it.

A row says which component it is (diffusion model, VAE, text encoder), which key patterns
identify it, how to read its config from weight shapes, how to build the module, and the
family's defaults (noise sampling for diffusion models, latent normalisation for VAEs). FLUX
with BFL's original keys, SD3 or Wan are further rows with their own architecture module;
detection, loading and the wrappers do not change (`unet`: SD1.x/2.x/SDXL in diffusers' layout, discrete
VP; `wan`: Wan 2.x video transformers in diffusers' layout, 5-D latents). The table is read-only.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Literal, Protocol

import torch
from torch import nn

from modeling.architectures import autoencoder_kl, clip_text, flux, flux_bfl, unet, wan
from modeling.conditioning import ConditioningBuilder
from sampling.contract import NoiseSchedule
from sampling.discrete_vp import DiscreteVP
from sampling.flow import FlowSampling

Component = Literal["diffusion_model", "vae", "text_encoder"]
COMPONENTS: tuple[Component, ...] = ("diffusion_model", "vae", "text_encoder")


class VelocityCall(Protocol):
    """Calls a diffusion module on what it reads: latent x ([B, C, H, W], or [B, C, T, H, W] for video),
    its time input t [B] (`NoiseSchedule.model_input`: flow time for flow models, the timestep for
    discrete VP ones), the family's conditioning object, and an explicit guidance scale for
    guidance-distilled models (None: the conditioning's). Returns what the module predicts (velocity,
    noise or v; the family's schedule turns it into the velocity)."""

    def __call__(
        self,
        module: nn.Module,
        x: torch.Tensor,
        t: torch.Tensor,
        condition: Any,
        guidance: float | None,
    ) -> torch.Tensor: ...


@dataclass(frozen=True)
class LatentFormat:
    """How a VAE's latents are normalised for the diffusion model: `(mean - shift) * scale`."""

    channels: int
    shift: float
    scale: float


@dataclass(frozen=True)
class ModelFamily:
    """One architecture Flowmill can detect and load.

    Key patterns use shell wildcards (`*` matches any text, dots included) and are matched
    against the keys after `key_prefixes` are stripped and `ignored_keys` dropped (`canonical`).
    """

    name: str
    component: Component
    required_keys: tuple[str, ...]
    infer_config: Callable[[Mapping[str, torch.Tensor]], dict[str, Any]]
    build: Callable[[Mapping[str, Any]], nn.Module]
    # config.json keys that the weight shapes cannot reveal; other config.json keys must agree
    # with the shapes.
    file_settings: tuple[str, ...] = ()
    check_config: Callable[[Mapping[str, Any]], None] | None = None
    # Patterns whose presence rules the family out, to keep look-alike architectures apart.
    excluded_keys: tuple[str, ...] = ()
    key_prefixes: tuple[str, ...] = ()
    ignored_keys: tuple[str, ...] = ()
    latent_channels: Callable[[Mapping[str, Any]], int] | None = None
    # Dimensions of the latents it denoises: 4 for images [B, C, H, W], 5 for video [B, C, T, H, W].
    latent_ndim: int = 4
    sampling: NoiseSchedule | None = None
    velocity: VelocityCall | None = None
    # Turns a CONDITIONING pair into the family's conditioning object (modeling/conditioning.py).
    conditioning: ConditioningBuilder | None = None
    latent_formats: tuple[LatentFormat, ...] = ()
    # Renames the canonical state dict into the built module's keys, for rows whose file layout
    # differs from the module's (BFL FLUX files into diffusers' FluxTransformer2DModel).
    to_module_keys: Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None

    def canonical(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The state dict in this family's own key layout."""
        result = {}
        for key, value in state.items():
            for prefix in self.key_prefixes:
                if key.startswith(prefix):
                    key = key[len(prefix):]
            if not any(fnmatch.fnmatchcase(key, pattern) for pattern in self.ignored_keys):
                result[key] = value
        return result

    def module_state(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The state dict under the built module's keys (canonical, then converted if the row says so)."""
        canonical = self.canonical(state)
        return self.to_module_keys(canonical) if self.to_module_keys is not None else canonical

    def missing_patterns(self, keys: list[str]) -> list[str]:
        """The required patterns that no key matches (`keys` in canonical layout)."""
        return [pattern for pattern in self.required_keys if not _any_match(keys, pattern)]

    def excluding_patterns(self, keys: list[str]) -> list[str]:
        """The excluded patterns that some key matches."""
        return [pattern for pattern in self.excluded_keys if _any_match(keys, pattern)]

    def latent_format(self, channels: int) -> LatentFormat | None:
        """The family's default latent normalisation for `channels`-channel latents, if it has one."""
        return next((item for item in self.latent_formats if item.channels == channels), None)


def _any_match(keys: list[str], pattern: str) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for key in keys)


FLUX_LATENT_FORMAT = LatentFormat(channels=16, shift=0.1159, scale=0.3611)
SD_LATENT_FORMAT = LatentFormat(channels=4, shift=0.0, scale=0.18215)

_FLUX = ModelFamily(
    name="flux",
    component="diffusion_model",
    required_keys=flux.REQUIRED_KEYS,
    infer_config=flux.infer_config,
    build=flux.build,
    file_settings=flux.FILE_SETTINGS,
    check_config=flux.check_config,
    latent_channels=flux.latent_channels,
    # ComfyUI's FLUX default (ModelSamplingFlux at 1024x1024: shift exp(1.15)).
    sampling=FlowSampling.flux(1024, 1024),
    velocity=flux.velocity,
    conditioning=flux.conditioning,
)

FAMILIES: Mapping[str, ModelFamily] = MappingProxyType({
    family.name: family
    for family in (
        _FLUX,
        # The same transformer from BFL's original files: read in BFL's keys, built and called as above.
        replace(
            _FLUX,
            name="flux_bfl",
            required_keys=flux_bfl.REQUIRED_KEYS,
            infer_config=flux_bfl.infer_config,
            excluded_keys=flux_bfl.EXCLUDED_KEYS,
            key_prefixes=flux_bfl.KEY_PREFIXES,
            to_module_keys=flux_bfl.to_diffusers,
        ),
        # SD1.x, SD2.x and SDXL UNets (diffusers' layout): discrete VP models on SD's noise table; a diffusers
        # folder's scheduler_config.json or ModelSamplingDiscrete switches the prediction to v.
        ModelFamily(
            name="unet",
            component="diffusion_model",
            required_keys=unet.REQUIRED_KEYS,
            infer_config=unet.infer_config,
            build=unet.build,
            file_settings=unet.FILE_SETTINGS,
            check_config=unet.check_config,
            excluded_keys=unet.EXCLUDED_KEYS,
            latent_channels=unet.latent_channels,
            sampling=DiscreteVP.scaled_linear("eps"),
            velocity=unet.velocity,
            conditioning=unet.conditioning,
        ),
        # Wan 2.1 / 2.2 video transformers (diffusers layout): 5-D latents [B, C, T, H, W].
        ModelFamily(
            name="wan",
            component="diffusion_model",
            required_keys=wan.REQUIRED_KEYS,
            infer_config=wan.infer_config,
            build=wan.build,
            file_settings=wan.FILE_SETTINGS,
            check_config=wan.check_config,
            excluded_keys=wan.EXCLUDED_KEYS,
            latent_channels=wan.latent_channels,
            latent_ndim=5,
            sampling=FlowSampling.sd3(wan.DEFAULT_SHIFT),
            velocity=wan.velocity,
            conditioning=wan.conditioning,
        ),
        ModelFamily(
            name="autoencoder_kl",
            component="vae",
            required_keys=autoencoder_kl.REQUIRED_KEYS,
            infer_config=autoencoder_kl.infer_config,
            build=autoencoder_kl.build,
            file_settings=autoencoder_kl.FILE_SETTINGS,
            latent_channels=autoencoder_kl.latent_channels,
            latent_formats=(FLUX_LATENT_FORMAT, SD_LATENT_FORMAT),
        ),
        ModelFamily(
            name="clip_text",
            component="text_encoder",
            required_keys=clip_text.REQUIRED_KEYS,
            infer_config=clip_text.infer_config,
            build=clip_text.build,
            file_settings=clip_text.FILE_SETTINGS,
            key_prefixes=clip_text.KEY_PREFIXES,
            ignored_keys=clip_text.IGNORED_KEYS,
        ),
    )
})

# CLIPLoader's encoder kinds -> the text-encoder families that serve them.
TEXT_ENCODER_KINDS: Mapping[str, tuple[str, ...]] = MappingProxyType({"clip": ("clip_text",)})


def families_for(component: Component | None = None) -> list[ModelFamily]:
    """The rows for one component (all rows for None), in table order."""
    return [family for family in FAMILIES.values() if component is None or family.component == component]
