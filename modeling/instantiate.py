"""From located weights to a ready module: detect the family, settle the config, build, load.

The module is built with its parameters on the meta device (no memory, no random init) and
then takes the stored tensors as its parameters, so a large model is never held twice. Any
mismatch between weights and architecture is reported with the file's name before loading.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from modeling.components import ComponentWeights
from modeling.errors import ModelFileError
from modeling.families import ModelFamily
from modeling.page_release import WeightFileMappings
from modeling.storage import AsStored, WeightStorage

_COMPUTE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_MAX_LISTED = 6


def resolve_config(family: ModelFamily, weights: ComponentWeights) -> dict[str, Any]:
    """The family's config from the weight shapes, completed by the config.json beside them.

    config.json supplies what shapes cannot show (`family.file_settings`); any other value it
    states must agree with the shapes, which catches a config.json that belongs to other weights.
    """
    state = family.canonical(weights.state)
    try:
        config = family.infer_config(state)
    except ModelFileError as error:
        raise ModelFileError(f"{weights.origin}: not a complete {family.name} {_what(family)}: {error}") from None
    if weights.config is not None:
        for key, value in weights.config.items():
            value = _plain(value)
            if key in family.file_settings:
                config[key] = value
            elif key in config and value != config[key]:
                raise ModelFileError(
                    f"{weights.config_source} says {key} = {value!r} but the weights in {weights.origin} have "
                    f"{config[key]!r}; this config belongs to other weights"
                )
    if family.check_config is not None:
        try:
            family.check_config(config)
        except ModelFileError as error:
            raise ModelFileError(f"{weights.origin}: {error}") from None
    return config


def instantiate(
    family: ModelFamily,
    config: Mapping[str, Any],
    weights: ComponentWeights,
    *,
    device: torch.device,
    dtype: torch.dtype,
    storage: WeightStorage | None = None,
) -> nn.Module:
    """The built module with the stored weights, on `device` in `dtype`, in eval mode, frozen.

    `storage` (default: the file's own precision, modeling/storage.py) decides which weights are held
    in another format; it runs after the module is built on the meta device and before the weights
    are assigned, so each weight goes from the file straight into its storage format, without a
    full-precision copy in between.
    """
    from accelerate import init_empty_weights

    try:
        # Parameters are created on the meta device (buffers stay real: rotary tables, position
        # ids). accelerate patches parameter registration for the duration, so no other thread
        # may build modules meanwhile; loading happens on the one worker thread.
        with init_empty_weights(include_buffers=False):
            module = family.build(config)
    except (ValueError, TypeError, RuntimeError) as error:
        hint = ""
        if weights.config is None and family.file_settings:
            hint = (f" Settings the weights cannot show ({', '.join(family.file_settings)}) come from a "
                    f"config.json beside them (or the file's metadata \"config\"), and there is none.")
        raise ModelFileError(
            f"{weights.origin}: cannot build a {family.name} {_what(family)} from config {dict(config)}: {error}.{hint}"
        ) from None
    state = family.module_state(weights.state)
    check_fit(module, state, family, weights.origin)
    held = (storage or AsStored()).prepare(module, state)
    rest = _cast(module, {key: value for key, value in state.items() if key not in held}, dtype)
    module.load_state_dict({**rest, **held}, strict=True, assign=True)
    keep = tuple(getattr(module, "_keep_in_fp32_modules", None) or ())
    for path, owner in module.named_modules():
        # Buffers built at construction (rotary tables) follow the dtype, except in the modules the class keeps
        # in float32 (Wan's `rope`: its tables in bfloat16 would shift every position's angle).
        target = torch.float32 if any(name in path.split(".") for name in keep) else dtype
        for name, buffer in owner.named_buffers(recurse=False):
            if buffer.is_floating_point() and buffer.dtype != target:
                setattr(owner, name, buffer.to(target))
    return module.to(device).eval().requires_grad_(False)


def _cast(module: nn.Module, state: Mapping[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Floating weights in `dtype`, except the modules the class keeps in float32 for precision.

    Casting here rather than with `module.to(dtype)` honours diffusers' `_keep_in_fp32_modules`. The file
    pages under each converted tensor are given back as it is done (modeling/page_release.py).
    """
    keep = tuple(getattr(module, "_keep_in_fp32_modules", None) or ())
    mappings = WeightFileMappings.of_this_process()
    cast = {}
    for key, value in state.items():
        target = torch.float32 if any(name in key.split(".") for name in keep) else dtype
        cast[key] = value.to(target) if value.is_floating_point() else value
        if cast[key].data_ptr() != value.data_ptr():
            mappings.release(value)  # the file's pages of a converted tensor: one copy of the weights at a time
    return cast


def check_fit(module: nn.Module, state: Mapping[str, torch.Tensor], family: ModelFamily, origin: str) -> None:
    """Raise a ModelFileError listing missing, unexpected and wrongly shaped weights."""
    expected = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong = [
        f"{key} stored {tuple(state[key].shape)}, model {shape}"
        for key, shape in expected.items()
        if key in state and tuple(state[key].shape) != shape
    ]
    problems = [
        f"{label}: {_listing(items)}"
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong))
        if items
    ]
    if problems:
        raise ModelFileError(f"{origin}: the weights do not fit the {family.name} {_what(family)} they describe: "
                             + "; ".join(problems))


def default_dtype(state: Mapping[str, torch.Tensor], device: torch.device) -> torch.dtype:
    """float32 on the CPU (half-precision kernels there are slow or missing), else the stored precision.

    Stored formats that cannot compute (fp8) run in bfloat16.
    """
    if device.type == "cpu":
        return torch.float32
    counts = Counter(value.dtype for value in state.values() if value.is_floating_point())
    stored = counts.most_common(1)[0][0] if counts else torch.float32
    return stored if stored in _COMPUTE_DTYPES else torch.bfloat16


def _listing(items: list[str]) -> str:
    more = f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return ", ".join(items[:_MAX_LISTED]) + more


def _plain(value: Any) -> Any:
    """JSON lists as tuples, so config.json values compare equal to inferred ones."""
    return tuple(_plain(item) for item in value) if isinstance(value, list) else value


def _what(family: ModelFamily) -> str:
    return family.component.replace("_", " ")
