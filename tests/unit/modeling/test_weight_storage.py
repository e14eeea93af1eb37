"""Weight storage in loading (modeling/storage.py): fp8 Linear weights held in 1 byte and upcast per call.

The reference for every output is the plain diffusers module whose Linear weights were rounded
through fp8 and back, run by diffusers' own forward: storing fp8 must change nothing else.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from modeling.conditioning import FluxConditioning
from modeling.architectures import flux
from modeling.loading import load_diffusion_model
from modeling.placement import module_bytes
from modeling.storage import UpcastLinear, storage_named
from tests.fixtures.tiny_models import build_flux

FP8 = {"fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}


@pytest.fixture(scope="module")
def tiny_flux() -> nn.Module:
    return build_flux(seed=11, num_layers=2, num_single_layers=2, guidance_embeds=True).eval()


@pytest.fixture(scope="module")
def flux_file(tiny_flux: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("storage") / "tiny-flux.safetensors"
    save_file({key: value.contiguous() for key, value in tiny_flux.state_dict().items()}, str(path))
    return path


def linear_weight_keys(module: nn.Module) -> list[str]:
    return [f"{name}.weight" for name, layer in module.named_modules() if isinstance(layer, nn.Linear)]


def rounded_through(module: nn.Module, dtype: torch.dtype, compute: torch.dtype = torch.float32) -> nn.Module:
    """A copy of `module` in `compute` whose Linear weights went through `dtype` and back."""
    result = copy.deepcopy(module)
    with torch.no_grad():
        for layer in result.modules():
            if isinstance(layer, nn.Linear):
                layer.weight.copy_(layer.weight.to(dtype).float())
    return result.to(compute)  # exact for the rounded weights: every fp8 value is a bf16 value


def velocity_of(module: nn.Module, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(12)
    x = torch.randn(2, 16, 6, 8, generator=generator).to(dtype)
    context = torch.randn(2, 5, module.config.joint_attention_dim, generator=generator).to(dtype)
    pooled = torch.randn(2, module.config.pooled_projection_dim, generator=generator).to(dtype)
    with torch.no_grad():
        return flux.velocity(module, x, torch.tensor([0.8, 0.4], dtype=dtype), FluxConditioning(context, pooled), 3.0)


@pytest.mark.parametrize("storage", sorted(FP8))
def test_fp8_storage_matches_the_module_with_fp8_rounded_weights(tiny_flux: nn.Module, flux_file: Path,
                                                                 storage: str) -> None:
    model = load_diffusion_model(flux_file, device="cpu", storage=storage)
    assert model.dtype == torch.float32
    state = model.module.state_dict()
    keys = linear_weight_keys(model.module)
    assert len(keys) > 20
    assert all(state[key].dtype == FP8[storage] and state[key].element_size() == 1 for key in keys)
    assert all(isinstance(model.module.get_submodule(key.removesuffix(".weight")), UpcastLinear) for key in keys)
    # Biases and norms stay in the compute dtype.
    assert state["norm_out.linear.bias"].dtype == torch.float32
    assert state["transformer_blocks.0.attn.norm_q.weight"].dtype == torch.float32
    expected = velocity_of(rounded_through(tiny_flux, FP8[storage]))
    assert torch.allclose(velocity_of(model.module), expected, rtol=0, atol=1e-6)
    assert not torch.allclose(velocity_of(tiny_flux), expected, atol=1e-3)  # fp8 rounding is visible


def test_e5m2_differs_from_e4m3fn(flux_file: Path) -> None:
    e4m3 = load_diffusion_model(flux_file, device="cpu", storage="fp8_e4m3fn").module
    e5m2 = load_diffusion_model(flux_file, device="cpu", storage="fp8_e5m2").module
    weight = "transformer_blocks.0.attn.to_q.weight"
    assert e4m3.state_dict()[weight].dtype != e5m2.state_dict()[weight].dtype
    assert not torch.equal(e4m3.state_dict()[weight].float(), e5m2.state_dict()[weight].float())
    assert not torch.allclose(velocity_of(e4m3), velocity_of(e5m2), atol=1e-4)


def test_the_byte_accounting_sees_one_byte_per_linear_weight(flux_file: Path) -> None:
    full = load_diffusion_model(flux_file, device="cpu").module
    held = load_diffusion_model(flux_file, device="cpu", storage="fp8_e4m3fn").module
    linear_elements = sum(full.state_dict()[key].numel() for key in linear_weight_keys(full))
    assert module_bytes(full) - module_bytes(held) == 3 * linear_elements


def test_a_plain_fp8_file_loads_as_fp8_with_default_storage(tiny_flux: nn.Module, tmp_path: Path) -> None:
    # As in flux1-dev-fp8_e4m3fn.safetensors: Linear weights in fp8, no scales, everything else wider.
    linear = set(linear_weight_keys(tiny_flux))
    state = {key: value.to(torch.float8_e4m3fn) if key in linear else value.to(torch.bfloat16)
             for key, value in tiny_flux.state_dict().items()}
    path = tmp_path / "tiny-flux-fp8_e4m3fn.safetensors"
    save_file({key: value.contiguous() for key, value in state.items()}, str(path))
    model = load_diffusion_model(path, device="cpu")
    loaded = model.module.state_dict()
    assert all(loaded[key].dtype == torch.float8_e4m3fn for key in linear)
    assert loaded["proj_out.bias"].dtype == torch.float32 and model.dtype == torch.float32
    reference = rounded_through(tiny_flux, torch.float8_e4m3fn)
    with torch.no_grad():  # the file's other tensors went through bfloat16
        for key, value in reference.state_dict().items():
            if key not in linear:
                value.copy_(value.to(torch.bfloat16).float())
    assert torch.allclose(velocity_of(model.module), velocity_of(reference), rtol=0, atol=1e-6)


def test_fp8_storage_upcasts_to_a_half_precision_compute_dtype(tiny_flux: nn.Module, flux_file: Path) -> None:
    """On a GPU the compute dtype is bf16: each layer's fp8 weight is upcast to bf16 (run here on the CPU)."""
    model = load_diffusion_model(flux_file, device="cpu", dtype=torch.bfloat16, storage="fp8_e4m3fn")
    assert model.dtype == torch.bfloat16
    assert model.module.state_dict()["proj_out.weight"].dtype == torch.float8_e4m3fn
    result = velocity_of(model.module, torch.bfloat16)
    assert result.dtype == torch.bfloat16
    expected = velocity_of(rounded_through(tiny_flux, torch.float8_e4m3fn, torch.bfloat16), torch.bfloat16)
    assert torch.equal(result, expected)


def test_unknown_storage_is_a_clear_error(flux_file: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown weight storage 'int3'; expected one of 'default', 'fp8_e4m3fn'"):
        storage_named("int3")
    with pytest.raises(ValueError, match="unknown weight storage 'nf4'"):
        load_diffusion_model(flux_file, device="cpu", storage="nf4")


def test_fp8_storages_compute_in_bfloat16_on_a_gpu_and_float32_on_the_cpu() -> None:
    """The compute dtype is chosen before any device is touched, so this holds without a GPU."""
    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    for name in FP8:
        assert storage_named(name).compute_dtype(torch.float32, gpu) == torch.bfloat16
        assert storage_named(name).compute_dtype(torch.bfloat16, cpu) == torch.float32
    assert storage_named("default").compute_dtype(torch.float16, gpu) == torch.float16


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_fp8_weights_stay_fp8_on_the_device_and_compute_in_bfloat16(tiny_flux: nn.Module,
                                                                            flux_file: Path) -> None:
    from modeling.manager import build_model_manager
    from modeling.model_refs import ModelRef, WeightsSource

    cuda = torch.device("cuda")
    ref = ModelRef(WeightsSource(str(flux_file), "test"), "diffusion_model", family="flux", storage="fp8_e4m3fn")
    with build_model_manager(cuda).use(ref) as model:
        weight = model.module.transformer_blocks[0].attn.to_q.weight
        assert weight.is_cuda and weight.dtype == torch.float8_e4m3fn and model.dtype == torch.bfloat16
        generator = torch.Generator().manual_seed(12)
        x = torch.randn(2, 16, 6, 8, generator=generator)
        context = torch.randn(2, 5, tiny_flux.config.joint_attention_dim, generator=generator)
        pooled = torch.randn(2, tiny_flux.config.pooled_projection_dim, generator=generator)
        result = model.velocity(x, torch.tensor([0.8, 0.4]), FluxConditioning(context, pooled), guidance=3.0)
    assert result.device.type == "cpu" and torch.isfinite(result).all()
    expected = velocity_of(rounded_through(tiny_flux, torch.float8_e4m3fn))
    torch.testing.assert_close(result, expected, atol=0.05, rtol=0.05)  # bf16 compute vs float32
