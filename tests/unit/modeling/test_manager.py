"""The model manager on real files: residency across uses, budgets, streaming, patch scopes.

Models are tiny FLUX transformers and a tiny checkpoint folder written by the tests
(tests/fixtures/tiny_models.py); the device tier runs on the CPU with an accounting budget
(`DeviceAccount`), as the manager's docstring describes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from modeling.diffusion_model import DiffusionModel
from modeling.manager import Budgets, DeviceBudgetError, ModelManager
from modeling.model_refs import ModelRef, PatchSite, Undo, WeightsSource
from modeling.placement import module_bytes
from modeling.reference_loading import load_reference
from modeling.residency import Residency
from modeling.text_encoder import TextEncoder
from modeling.vae import Vae
from sampling.flow import FlowSampling
from tests.fixtures.tiny_models import build_flux, fixed_velocity, write_model_folder

CPU = torch.device("cpu")


def _flux_file(folder: Path, seed: int, **overrides: int) -> Path:
    path = folder / f"flux-{seed}.safetensors"
    module = build_flux(seed, **overrides)
    save_file({key: value.contiguous() for key, value in module.state_dict().items()}, str(path))
    return path


def _ref(path: Path, component: str = "diffusion_model", **fields: object) -> ModelRef:
    stat = path.stat()
    return ModelRef(WeightsSource(str(path), f"{stat.st_size}:{stat.st_mtime_ns}"), component, **fields)


def _manager(ram: int = 2**34, vram: int = 2**34) -> ModelManager:
    return ModelManager(CPU, Budgets(ram, vram), load_reference)


@dataclass(frozen=True)
class ScaleWeight:
    """A test patch: one parameter multiplied by a factor, the original tensor put back after."""

    name: str
    factor: float

    def apply(self, module: nn.Module, site: PatchSite) -> Undo:
        parameter = module.get_parameter(self.name)
        original = parameter.data
        parameter.data = original * self.factor

        def undo() -> None:
            parameter.data = original

        return undo


def test_residency_drops_least_recently_used_first_and_skips_models_in_use() -> None:
    tier = Residency(100)
    for key in "abc":
        tier.add(key, 30)
    tier.touch("a")  # order now b, c, a
    assert tier.make_room(40, in_use=set()) == ["b"]
    assert tier.make_room(40, in_use={"b"}) == ["c"]
    assert tier.make_room(200, in_use={"c"}) == ["b", "a"]  # over budget by what is in use


def test_a_model_is_read_once_and_shared_by_references_that_differ_in_sampling_or_patches(tmp_path: Path) -> None:
    path = _flux_file(tmp_path, 0)
    manager = _manager()
    plain = _ref(path)
    shifted = plain.with_sampling(FlowSampling(shift=2.0))
    with manager.use(plain) as model:
        first = fixed_velocity(model)
    with manager.use(shifted) as model:
        assert model.sampling.shift == 2.0
        assert torch.equal(fixed_velocity(model), first)
    with manager.use(plain.patched(ScaleWeight("proj_out.weight", 2.0))):
        pass
    assert manager.loads == 1
    assert manager.stats()["loaded"][0]["bytes"] == module_bytes(build_flux(0))


def test_switching_between_two_models_that_fit_reads_each_once_and_a_third_evicts_the_oldest(tmp_path: Path) -> None:
    paths = [_flux_file(tmp_path, seed) for seed in range(3)]
    size = module_bytes(build_flux(0))
    manager = _manager(ram=2 * size)
    first, second, third = (_ref(path) for path in paths)
    for ref in (first, second, first, second, first):
        with manager.use(ref):
            pass
    assert manager.loads_by_key == {first.weights_key: 1, second.weights_key: 1}
    with manager.use(third):  # evicts `second`, the least recently used
        pass
    with manager.use(first):
        pass
    assert manager.loads_by_key[first.weights_key] == 1
    with manager.use(second):
        pass
    assert manager.loads_by_key[second.weights_key] == 2
    assert manager.host_bytes <= 2 * size


def test_patches_exist_only_inside_the_scope_and_are_undone_on_error(tmp_path: Path) -> None:
    manager = _manager()
    ref = _ref(_flux_file(tmp_path, 0))
    with manager.use(ref) as model:
        base = fixed_velocity(model)
        weights = model.module.proj_out.weight.clone()
    patched = ref.patched(ScaleWeight("proj_out.weight", 3.0))
    with manager.use(patched) as model:
        changed = fixed_velocity(model)
    assert not torch.allclose(changed, base)
    with pytest.raises(RuntimeError, match="inside"), manager.use(patched) as model:
        raise RuntimeError("failure inside the scope")
    with manager.use(ref) as model:
        assert torch.equal(model.module.proj_out.weight, weights)
        assert torch.equal(fixed_velocity(model), base)


def test_a_model_larger_than_the_device_budget_streams_block_by_block_with_the_same_output(tmp_path: Path) -> None:
    path = _flux_file(tmp_path, 0, num_layers=3, num_single_layers=3)
    whole = _manager()
    with whole.use(_ref(path)) as model:
        expected = fixed_velocity(model)
    size = module_bytes(build_flux(0, num_layers=3, num_single_layers=3))
    budget = size // 2
    streamed = _manager(vram=budget)
    with streamed.use(_ref(path)) as model:
        result = fixed_velocity(model)
        assert streamed.device_bytes == 0  # not resident on the device as a whole
    assert torch.equal(result, expected)
    assert 0 < streamed.account.peak <= budget
    assert streamed.account.placed == 0


def test_a_device_budget_below_one_block_is_a_clear_error(tmp_path: Path) -> None:
    manager = _manager(vram=1024)
    with pytest.raises(DeviceBudgetError, match="--vram-budget"), manager.use(_ref(_flux_file(tmp_path, 0))):
        pass


def test_the_device_tier_keeps_the_most_recent_models_within_its_budget(tmp_path: Path) -> None:
    paths = [_flux_file(tmp_path, seed) for seed in range(2)]
    size = module_bytes(build_flux(0))
    manager = _manager(vram=size)
    for path in (*paths, paths[0]):
        with manager.use(_ref(path)):
            pass
    assert manager.device_bytes == size
    assert [entry["device"] for entry in manager.stats()["loaded"]] == ["cpu", "cpu"]  # the CPU is the device here
    assert manager.account.placed == size


def test_unload_all_empties_the_manager(tmp_path: Path) -> None:
    manager = _manager()
    ref = _ref(_flux_file(tmp_path, 0))
    with manager.use(ref):
        pass
    manager.unload_all()
    assert manager.stats()["loaded"] == [] and manager.host_bytes == 0 and manager.account.placed == 0
    with manager.use(ref):
        pass
    assert manager.loads == 2


def test_checkpoint_components_load_from_one_folder_and_the_diffusion_model_carries_the_preview(
        tmp_path: Path) -> None:
    folder = write_model_folder(tmp_path / "tiny")
    (folder / "vae" / "latent_preview.json").write_text(
        '{"factors": ' + str([[0.1, 0.2, 0.3]] * 16) + ', "bias": [0.5, 0.5, 0.5]}')
    manager = _manager()
    parts = {component: _ref(folder, component) for component in ("diffusion_model", "vae", "text_encoder")}
    with manager.use(parts["diffusion_model"]) as model:
        assert isinstance(model, DiffusionModel) and model.latent_preview is not None
    with manager.use(parts["vae"]) as vae:
        assert isinstance(vae, Vae)
    with manager.use(parts["text_encoder"]) as encoder:
        assert isinstance(encoder, TextEncoder)
    assert manager.loads == 3


def test_an_overlapping_scope_on_the_same_weights_waits_and_never_sees_the_others_patches(tmp_path: Path) -> None:
    manager = _manager()
    ref = _ref(_flux_file(tmp_path, 0))
    with manager.use(ref) as model:
        base = fixed_velocity(model)
    inside, release = threading.Event(), threading.Event()
    seen: list[torch.Tensor] = []

    def patched_user() -> None:
        with manager.use(ref.patched(ScaleWeight("proj_out.weight", 5.0))):
            inside.set()
            release.wait(10)

    def plain_user() -> None:
        with manager.use(ref) as model:
            seen.append(fixed_velocity(model))

    first = threading.Thread(target=patched_user)
    first.start()
    assert inside.wait(10)
    second = threading.Thread(target=plain_user)
    second.start()
    second.join(0.3)
    assert second.is_alive() and not seen  # waits for the patched scope to end
    release.set()
    first.join(10)
    second.join(10)
    assert len(seen) == 1 and torch.equal(seen[0], base)


def test_a_nested_scope_on_the_same_thread_reuses_the_model_or_refuses_other_patches(tmp_path: Path) -> None:
    manager = _manager()
    ref = _ref(_flux_file(tmp_path, 0))
    with manager.use(ref) as outer:
        with manager.use(ref) as inner:
            assert inner is outer
        with pytest.raises(RuntimeError, match="already in use on this thread"), \
                manager.use(ref.patched(ScaleWeight("proj_out.weight", 2.0))):
            pass
