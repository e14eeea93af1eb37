"""LoraPatch: the merge formula, new tensors instead of writes, bit-exact undo, and its life in manager scopes.

Models are tiny FLUX transformers written to real safetensors files and loaded by the real model
manager (memory-mapped, as in production), so "never in place" is tested on the tensors a real
scope hands out.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from modeling.diffusion_model import DiffusionModel
from modeling.families import FAMILIES
from modeling.lora import LoraFormatError, LoraPatch
from modeling.manager import Budgets, ModelManager
from modeling.model_refs import ModelRef, Patch, WeightsSource
from modeling.placement import module_bytes
from modeling.reference_loading import load_reference
from sampling.flow import FlowSampling
from tests.fixtures import tiny_loras
from tests.fixtures.tiny_loras import bfl_shapes, flux_layer_names
from tests.fixtures.tiny_models import build_flux, fixed_velocity

CPU = torch.device("cpu")


def flux_file(folder: Path, **overrides: int) -> Path:
    path = folder / "flux.safetensors"
    module = build_flux(0, **overrides)
    save_file({key: value.contiguous() for key, value in module.state_dict().items()}, str(path))
    return path


def reference(path: Path) -> ModelRef:
    stat = path.stat()
    return ModelRef(WeightsSource(str(path), f"{stat.st_size}:{stat.st_mtime_ns}"), "diffusion_model")


def lora_file(folder: Path, name: str, seed: int, flux: nn.Module | None = None) -> Path:
    flux = flux or build_flux()
    lora = tiny_loras.random_lora(bfl_shapes(flux), flux_layer_names(flux), seed=seed, alpha=2.0)
    return tiny_loras.save(folder / name, tiny_loras.kohya(lora))


def patch(path: Path, strength: float = 0.8) -> LoraPatch:
    return LoraPatch(WeightsSource(str(path), "test"), strength, "diffusion_model", label=path.name)


def manager(vram: int = 2**34) -> ModelManager:
    return ModelManager(CPU, Budgets(2**34, vram), load_reference)


def fixed_velocity_of(flux: nn.Module) -> torch.Tensor:
    """`fixed_velocity` of a bare FLUX module (not from a manager)."""
    return fixed_velocity(DiffusionModel(flux, FAMILIES["flux"], FlowSampling.sd3(), 16, CPU, torch.float32))


def snapshot(module: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each parameter's tensor object (what undo must give back) and a copy of its values."""
    return {name: (parameter.data, parameter.detach().clone()) for name, parameter in module.named_parameters()}


def test_apply_gives_new_tensors_leaves_the_base_unwritten_and_undo_restores_the_same_tensors(tmp_path: Path) -> None:
    flux = build_flux()
    before = snapshot(flux)
    undo = patch(lora_file(tmp_path, "a.safetensors", 1)).apply(flux, tiny_loras.site())
    changed = [name for name, parameter in flux.named_parameters() if parameter.data is not before[name][0]
               and parameter.data_ptr() != before[name][0].data_ptr()]
    assert "transformer_blocks.0.attn.to_q.weight" in changed and "norm_out.linear.weight" in changed
    assert not any(name.endswith(".bias") for name in changed)  # a LoRA changes weights, not biases
    for name, (tensor, values) in before.items():
        assert torch.equal(tensor, values), f"{name}: the base tensor was written"
    undo()
    for name, parameter in flux.named_parameters():
        tensor, values = before[name]
        assert parameter.data_ptr() == tensor.data_ptr() and torch.equal(parameter.data, values), name


def test_the_merge_is_w_plus_strength_times_alpha_over_rank_times_up_down_in_float32(tmp_path: Path) -> None:
    flux = build_flux().to(torch.bfloat16)
    lora = tiny_loras.random_lora(bfl_shapes(flux), ["double_blocks.0.img_attn.proj"], seed=2, rank=4, alpha=8.0)
    path = tiny_loras.save(tmp_path / "proj.safetensors", tiny_loras.kohya(lora))
    weight = flux.transformer_blocks[0].attn.to_out[0].weight
    base = weight.detach().clone()
    undo = patch(path, strength=-0.5).apply(flux, tiny_loras.site())
    factors = lora["double_blocks.0.img_attn.proj"]
    expected = (base.float() + (-0.5 * 8.0 / 4) * (factors.up @ factors.down)).to(torch.bfloat16)
    assert weight.dtype == torch.bfloat16 and torch.equal(weight.detach(), expected)
    undo()
    assert torch.equal(weight.detach(), base)


def test_strength_zero_touches_nothing(tmp_path: Path) -> None:
    flux = build_flux()
    before = snapshot(flux)
    undo = patch(lora_file(tmp_path, "a.safetensors", 1), strength=0.0).apply(flux, tiny_loras.site())
    assert all(parameter.data_ptr() == before[name][0].data_ptr() for name, parameter in flux.named_parameters())
    undo()


def test_two_loras_on_one_model_add_up_and_undo_in_reverse(tmp_path: Path) -> None:
    flux = build_flux()
    first, second = patch(lora_file(tmp_path, "a.safetensors", 1)), patch(lora_file(tmp_path, "b.safetensors", 2))
    weight = flux.transformer_blocks[0].attn.to_q.weight
    base = weight.detach().clone()
    undo_first = first.apply(flux, tiny_loras.site())
    alone = weight.detach() - base
    undo_first()
    undo_second = second.apply(flux, tiny_loras.site())
    other = weight.detach() - base
    undo_second()
    undo_first, undo_second = first.apply(flux, tiny_loras.site()), second.apply(flux, tiny_loras.site())
    torch.testing.assert_close(weight.detach() - base, alone + other, atol=1e-6, rtol=1e-6)
    undo_second()
    undo_first()
    assert torch.equal(weight.detach(), base)


def test_in_a_manager_scope_the_lora_exists_only_inside_and_is_undone_when_the_scope_raises(tmp_path: Path) -> None:
    models = manager()
    ref = reference(flux_file(tmp_path))
    with models.use(ref) as model:
        base = fixed_velocity(model)
        before = snapshot(model.module)
    patched = ref.patched(patch(lora_file(tmp_path, "a.safetensors", 1)))
    with models.use(patched) as model:
        changed = fixed_velocity(model)
    assert (changed - base).abs().max() > 1e-3
    with pytest.raises(RuntimeError, match="inside"), models.use(patched):
        raise RuntimeError("failure inside the scope")
    with models.use(ref) as model:
        for name, parameter in model.module.named_parameters():
            tensor, values = before[name]
            assert parameter.data_ptr() == tensor.data_ptr() and torch.equal(parameter.data, values), name
        assert torch.equal(fixed_velocity(model), base)
    with models.use(patched) as model:
        assert torch.equal(fixed_velocity(model), changed)  # the same patch again: the same result
    assert models.loads == 1  # the base was read once; patches never reload it


def test_a_streamed_model_gets_the_same_lora_result_as_a_resident_one(tmp_path: Path) -> None:
    path = flux_file(tmp_path, num_layers=3, num_single_layers=3)
    flux = build_flux(0, num_layers=3, num_single_layers=3)
    lora = patch(lora_file(tmp_path, "a.safetensors", 1, flux))
    with manager().use(reference(path).patched(lora)) as model:
        expected = fixed_velocity(model)
    streamed = manager(vram=module_bytes(flux) // 2)
    with streamed.use(reference(path)) as model:
        before = snapshot(model.module)
    with streamed.use(reference(path).patched(lora)) as model:
        assert streamed.device_bytes == 0  # streamed block by block, not resident
        result = fixed_velocity(model)
        # Side branches: not one base weight was replaced, let alone written.
        for name, parameter in model.module.named_parameters():
            tensor, values = before[name]
            assert parameter.data_ptr() == tensor.data_ptr() and torch.equal(parameter.data, values), name
    torch.testing.assert_close(result, expected, atol=1e-5, rtol=1e-5)  # merged vs side branch: float32 rounding
    with streamed.use(reference(path)) as model, manager().use(reference(path)) as plain:
        assert torch.equal(fixed_velocity(model), fixed_velocity(plain))  # and the base came back: no hook left
        assert not any(layer._forward_hooks for layer in model.module.modules() if isinstance(layer, nn.Linear))


def test_side_branches_add_what_the_merge_adds_and_touch_no_weight(tmp_path: Path) -> None:
    flux = build_flux()
    lora = patch(lora_file(tmp_path, "a.safetensors", 1, flux), strength=-0.7)
    base = fixed_velocity_of(flux)
    undo = lora.apply(flux, tiny_loras.site())
    merged_result = fixed_velocity_of(flux)
    undo()
    before = snapshot(flux)
    undo = lora.apply(flux, tiny_loras.site(merge=False))
    branched = fixed_velocity_of(flux)
    assert all(parameter.data_ptr() == before[name][0].data_ptr() for name, parameter in flux.named_parameters())
    undo()
    assert (merged_result - base).abs().max() > 1e-3
    torch.testing.assert_close(branched, merged_result, atol=1e-5, rtol=1e-5)
    assert torch.equal(fixed_velocity_of(flux), base)


def test_an_fp8_stored_model_takes_the_lora_as_side_branches(tmp_path: Path) -> None:
    path = flux_file(tmp_path)
    lora = patch(lora_file(tmp_path, "a.safetensors", 1))
    fp8 = dataclasses.replace(reference(path), storage="fp8_e4m3fn")
    models = manager()
    with models.use(fp8) as model:
        before = snapshot(model.module)
        base = fixed_velocity(model)
    with models.use(fp8.patched(lora)) as model:
        changed = fixed_velocity(model)
        assert all(parameter.data_ptr() == before[name][0].data_ptr()
                   for name, parameter in model.module.named_parameters())
    assert (changed - base).abs().max() > 1e-3
    # The same LoRA merged into a full-precision copy of the fp8-rounded weights gives the same change.
    with models.use(fp8) as model:
        upcast = build_flux()
        upcast.load_state_dict({name: value.float() for name, value in model.module.state_dict().items()})
    undo = lora.apply(upcast, tiny_loras.site())
    torch.testing.assert_close(changed - base, fixed_velocity_of(upcast) - base, atol=2e-4, rtol=1e-3)
    undo()


def test_a_lora_file_is_read_once_across_scopes_and_counts_in_the_host_budget(tmp_path: Path) -> None:
    models = manager()
    ref = reference(flux_file(tmp_path))
    lora_path = lora_file(tmp_path, "a.safetensors", 1)
    for strength in (0.8, 0.8, 0.5):
        with models.use(ref.patched(patch(lora_path, strength))):
            pass
    assert list(models.patch_file_reads.values()) == [1]
    files = [entry for entry in models.stats()["loaded"] if entry["component"] == "patch file"]
    assert [entry["name"] for entry in files] == ["a.safetensors"] and files[0]["bytes"] > 0
    assert models.host_bytes == module_bytes(build_flux()) + files[0]["bytes"]
    models.unload_all()
    assert models.host_bytes == 0 and models.stats()["loaded"] == []


def test_a_patch_whose_file_fits_nothing_fails_the_scope_and_leaves_the_model_as_it_was(tmp_path: Path) -> None:
    models = manager()
    ref = reference(flux_file(tmp_path))
    stray = tiny_loras.save(tmp_path / "sd.safetensors", {
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 8),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(8, 4)})
    with models.use(ref) as model:
        base = fixed_velocity(model)
    with pytest.raises(LoraFormatError, match="sd.safetensors: no weight of this LoRA fits"), \
            models.use(ref.patched(patch(stray))):
        pass
    with models.use(ref) as model:
        assert torch.equal(fixed_velocity(model), base)


def test_a_pickle_lora_is_refused(tmp_path: Path) -> None:
    pickled = tmp_path / "lora.pt"
    pickled.write_bytes(b"not opened")
    with pytest.raises(ValueError, match="only safetensors files"):
        patch(pickled).apply(build_flux(), tiny_loras.site())


def test_patches_are_values_that_key_references(tmp_path: Path) -> None:
    path = lora_file(tmp_path, "a.safetensors", 1)
    ref = reference(flux_file(tmp_path))
    assert isinstance(patch(path), Patch)
    assert ref.patched(patch(path)) == ref.patched(patch(path))
    assert hash(ref.patched(patch(path))) == hash(ref.patched(patch(path)))
    assert ref.patched(patch(path, 0.5)) != ref.patched(patch(path, 0.6))
    assert ref.patched(patch(path)).weights_key == ref.weights_key  # one resident base for all of them


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_lora_merges_into_the_device_copy_and_gives_it_back(tmp_path: Path) -> None:
    cuda = torch.device("cuda")
    models = ModelManager(cuda, Budgets(2**34, 2**32), load_reference)
    ref = reference(flux_file(tmp_path))
    lora = patch(lora_file(tmp_path, "a.safetensors", 1))
    with models.use(ref) as model:
        before = {name: (parameter.data, parameter.detach().clone())
                  for name, parameter in model.module.named_parameters()}
        assert all(tensor.is_cuda for tensor, _ in before.values())
    with models.use(ref.patched(lora)) as model:
        on_cuda = fixed_velocity(model).cpu()
        assert model.module.transformer_blocks[0].attn.to_q.weight.is_cuda
    with manager().use(ref.patched(lora)) as model:
        on_cpu = fixed_velocity(model)
    torch.testing.assert_close(on_cuda, on_cpu, atol=1e-4, rtol=1e-4)
    with models.use(ref) as model:
        for name, parameter in model.module.named_parameters():
            assert parameter.data_ptr() == before[name][0].data_ptr() and torch.equal(parameter, before[name][1])
