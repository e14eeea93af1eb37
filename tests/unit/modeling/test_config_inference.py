"""Config inference round trip: build -> save -> detect + infer -> the same config and output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from modeling.architectures.flux import rope_axes
from modeling.components import locate
from modeling.detect import detect_family
from modeling.instantiate import instantiate, resolve_config
from tests.fixtures import tiny_models


def _round_trip(
    module: torch.nn.Module, folder: Path, component: str, *, with_config: bool = False
) -> tuple[torch.nn.Module, dict[str, Any]]:
    folder.mkdir()
    if with_config:
        module.save_config(folder)  # type: ignore[operator]
    save_file({key: value.contiguous() for key, value in module.state_dict().items()}, str(folder / "w.safetensors"))
    (weights,) = locate(folder / "w.safetensors", component)  # type: ignore[arg-type]
    family = detect_family(weights.state, component)  # type: ignore[arg-type]
    config = resolve_config(family, weights)
    return instantiate(family, config, weights, device=torch.device("cpu"), dtype=torch.float32), config


def test_flux_config_and_output_round_trip(tmp_path: Path) -> None:
    original = tiny_models.build_flux()
    rebuilt, config = _round_trip(original, tmp_path / "flux", "diffusion_model")
    assert config == tiny_models.flux_config()
    inputs = {
        "hidden_states": torch.randn(1, 4, 64), "encoder_hidden_states": torch.randn(1, 3, 64),
        "pooled_projections": torch.randn(1, 64), "timestep": torch.tensor([0.3]),
        "img_ids": torch.zeros(4, 3), "txt_ids": torch.zeros(3, 3), "return_dict": False,
    }
    with torch.no_grad():
        assert torch.equal(rebuilt(**inputs)[0], original(**inputs)[0])


def test_vae_config_round_trips_with_the_settings_shapes_cannot_show(tmp_path: Path) -> None:
    original = tiny_models.build_vae()
    # norm_num_groups and the latent scaling live only in the config.json beside the weights.
    rebuilt, config = _round_trip(original, tmp_path / "vae", "vae", with_config=True)
    assert {key: config[key] for key in tiny_models.vae_config()} == tiny_models.vae_config()
    images = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(rebuilt.encode(images).latent_dist.mean, original.encode(images).latent_dist.mean)


def test_clip_config_and_output_round_trip(tmp_path: Path) -> None:
    original = tiny_models.build_clip()
    rebuilt, config = _round_trip(original, tmp_path / "clip", "text_encoder")
    expected = tiny_models.clip_config()
    # Without a config.json the token ids are CLIP's; the loader replaces them with the tokenizer's.
    assert {key: value for key, value in config.items() if not key.endswith("token_id")} == {
        key: value for key, value in expected.items() if not key.endswith("token_id")}
    ids = torch.tensor([[tiny_models.START_ID, 5, 6, tiny_models.END_ID]])
    with torch.no_grad():
        assert torch.equal(rebuilt(input_ids=ids).last_hidden_state, original(input_ids=ids).last_hidden_state)


@pytest.mark.parametrize(("head_dim", "axes"), [(128, (16, 56, 56)), (32, (4, 14, 14)), (64, (8, 28, 28)),
                                                (16, (4, 6, 6))])
def test_rotary_axes_follow_flux_and_stay_even(head_dim: int, axes: tuple[int, int, int]) -> None:
    assert rope_axes(head_dim) == axes and sum(axes) == head_dim
