"""FlowTurbo's velocity refiner network and its file format: zero start, any patch-aligned size, exact
round trips, and loud refusals of files that are not refiners."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modeling.errors import ModelFileError
from modeling.velocity_refiner import (
    LoadedRefiner,
    RefinerConfig,
    VelocityRefinerNet,
    load_refiner,
    save_refiner,
)

SMALL = RefinerConfig(latent_channels=4, patch_size=2, hidden_size=32, heads=2, mlp_ratio=2.0)


def _inputs(batch: int = 2, height: int = 8, width: int = 8, channels: int = 4, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, height, width, generator=generator)
    velocity = torch.randn(batch, channels, height, width, generator=generator)
    return x, torch.rand(batch, generator=generator), velocity


def _trained_looking(config: RefinerConfig = SMALL, seed: int = 0) -> VelocityRefinerNet:
    """A net with every weight perturbed, so the output depends on all of them (zero-init outputs 0)."""
    torch.manual_seed(seed)
    net = VelocityRefinerNet(config)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return net.eval()


def test_untrained_refiner_returns_exactly_zero_offset() -> None:
    net = VelocityRefinerNet(SMALL)
    offset = net(*_inputs())
    assert offset.shape == (2, 4, 8, 8)
    assert torch.equal(offset, torch.zeros_like(offset))


@pytest.mark.parametrize(("height", "width"), [(2, 2), (8, 8), (4, 12), (16, 6)])
def test_any_multiple_of_the_patch_works(height: int, width: int) -> None:
    net = _trained_looking()
    x, sigma, velocity = _inputs(height=height, width=width)
    offset = net(x, sigma, velocity)
    assert offset.shape == x.shape and torch.isfinite(offset).all()
    assert offset.abs().mean() > 0


def test_tokens_land_back_where_they_came_from() -> None:
    """Unpatchify inverts patchify: changing one latent pixel changes the output most in its own patch."""
    net = _trained_looking()
    x, sigma, velocity = _inputs(batch=1, height=8, width=8)
    changed = x.clone()
    changed[0, :, 5, 2] += 5.0
    difference = (net(changed, sigma, velocity) - net(x, sigma, velocity)).abs().sum(1)[0]
    patch = difference.view(4, 2, 4, 2).sum((1, 3))  # per 2x2 patch
    assert patch.argmax().item() == 2 * 4 + 1  # patch row 2, column 1


def test_a_size_that_is_not_a_multiple_of_the_patch_names_the_sizes() -> None:
    net = _trained_looking()
    x, sigma, velocity = _inputs(height=7, width=8)
    with pytest.raises(ValueError, match=r"multiples of the patch size 2, got 7x8"):
        net(x, sigma, velocity)
    refiner = LoadedRefiner(net, torch.device("cpu"), torch.float32, "odd")
    with pytest.raises(ValueError, match=r"velocity refiner 'odd'.*patch size 2, got 7x8"):
        refiner(x, sigma, velocity)


def test_wrong_channels_or_velocity_shape_are_clear_errors() -> None:
    refiner = LoadedRefiner(_trained_looking(), torch.device("cpu"), torch.float32, "r")
    x, sigma, velocity = _inputs(channels=16)
    with pytest.raises(ValueError, match=r"expects 4-channel latents \[B, 4, H, W\], got shape \(2, 16, 8, 8\)"):
        refiner(x, sigma, velocity)
    x, sigma, velocity = _inputs()
    with pytest.raises(ValueError, match=r"the velocity must have the latent's shape"):
        refiner(x, sigma, velocity[:, :, :4])


def test_save_and_load_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    net = _trained_looking()
    path = save_refiner(tmp_path / "refiner.safetensors", net, {"base_model": "tiny"})
    loaded = load_refiner(path, "cpu")
    assert loaded.name == "refiner" and loaded.latent_channels == 4 and loaded.net.config == SMALL
    x, sigma, velocity = _inputs()
    with torch.no_grad():
        expected = net(x, sigma, velocity)
    assert torch.equal(loaded(x, sigma, velocity), expected)
    assert expected.abs().mean() > 0
    assert not any(parameter.requires_grad for parameter in loaded.net.parameters())


def test_loaded_refiner_keeps_the_callers_dtype(tmp_path: Path) -> None:
    path = save_refiner(tmp_path / "refiner.safetensors", _trained_looking(), {})
    x, sigma, velocity = _inputs()
    full = load_refiner(path, "cpu")
    reference = full(x, sigma, velocity)
    for dtype in (torch.float16, torch.float64):
        offset = full(x.to(dtype), sigma, velocity.to(dtype))
        assert offset.dtype == dtype and offset.device == x.device
        torch.testing.assert_close(offset.float(), reference, atol=5e-3, rtol=5e-3)
    half = load_refiner(path, "cpu", dtype=torch.bfloat16)
    offset = half(x, sigma, velocity)
    assert offset.dtype == torch.float32 and half.dtype == torch.bfloat16
    torch.testing.assert_close(offset, reference, atol=0.1, rtol=0.1)
    assert torch.equal(full(x, 0.5, velocity), full(x, torch.full((2,), 0.5), velocity))  # a scalar sigma


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_loaded_refiner_on_cuda_returns_to_the_callers_device(tmp_path: Path) -> None:
    path = save_refiner(tmp_path / "refiner.safetensors", _trained_looking(), {})
    refiner = load_refiner(path, "cuda")
    x, sigma, velocity = _inputs()
    offset = refiner(x, sigma, velocity)
    assert offset.device.type == "cpu" and offset.dtype == torch.float32
    torch.testing.assert_close(offset, load_refiner(path, "cpu")(x, sigma, velocity), atol=1e-4, rtol=1e-4)


def test_files_that_are_not_safetensors_are_refused(tmp_path: Path) -> None:
    pickled = tmp_path / "refiner.pt"
    torch.save(_trained_looking().state_dict(), pickled)
    with pytest.raises(ModelFileError, match=r"refiner\.pt: only safetensors files .* not '\.pt' \(a pickle format"):
        load_refiner(pickled, "cpu")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ModelFileError, match=r"garbage\.safetensors: not a readable safetensors file"):
        load_refiner(garbage, "cpu")
    with pytest.raises(ModelFileError, match=r"is a folder; a velocity refiner is one \.safetensors file"):
        load_refiner(tmp_path, "cpu")


def test_weights_without_a_refiner_config_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "some_vae.safetensors"
    save_file({"encoder.weight": torch.zeros(3, 3)}, str(path), metadata={"format": "pt"})
    with pytest.raises(ModelFileError, match=r"some_vae\.safetensors: not a velocity refiner: its metadata has no "
                                             r"'config' entry .* metadata keys found: format"):
        load_refiner(path, "cpu")


def test_wrong_keys_and_shapes_are_named(tmp_path: Path) -> None:
    state = {key: value.contiguous() for key, value in _trained_looking().state_dict().items()}
    metadata = {"config": json.dumps({"latent_channels": 4, "patch_size": 2, "hidden_size": 32, "heads": 2,
                                      "mlp_ratio": 2.0})}
    renamed = dict(state)
    renamed["block.attention.qkv.weight"] = renamed.pop("block.attn.qkv.weight")
    path = tmp_path / "renamed.safetensors"
    save_file(renamed, str(path), metadata=metadata)
    with pytest.raises(ModelFileError, match=r"renamed\.safetensors: the weights do not fit a velocity refiner .*"
                                             r"missing block\.attn\.qkv\.weight; unexpected block\.attention\.qkv"):
        load_refiner(path, "cpu")

    wider = {"config": metadata["config"].replace('"hidden_size": 32', '"hidden_size": 64')}
    path = tmp_path / "wider.safetensors"
    save_file(state, str(path), metadata=wider)
    with pytest.raises(ModelFileError, match=r"wider\.safetensors: weight '.*' has shape \(32, .*expects \(64,"):
        load_refiner(path, "cpu")

    unknown = {"config": json.dumps({"latent_channels": 4, "depth": 3})}
    path = tmp_path / "unknown.safetensors"
    save_file(state, str(path), metadata=unknown)
    with pytest.raises(ModelFileError, match=r"unknown\.safetensors: the refiner config .* does not fit \(expected "
                                             r"fields latent_channels, patch_size, hidden_size, heads, mlp_ratio\)"):
        load_refiner(path, "cpu")


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match=r"hidden_size 30 must divide into 4 heads"):
        RefinerConfig(hidden_size=30, heads=4)
    with pytest.raises(ValueError, match=r"patch_size must be a positive integer"):
        RefinerConfig(patch_size=0)
    with pytest.raises(ValueError, match=r"written by save_refiner itself"):
        save_refiner(Path("unused.safetensors"), VelocityRefinerNet(SMALL), {"config": "{}"})
