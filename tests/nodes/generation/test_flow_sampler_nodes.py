"""Issue 5's nodes on a tiny random-weight FLUX-architecture model: every sampler in KSampler, the
Sampler* option nodes, InvertToNoise and the BOSS pair."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from PIL import Image as PILImage

from engine.spec import NodeOutput
from modeling.velocity_refiner import RefinerConfig, VelocityRefinerNet, save_refiner
from sampling.samplers import sampler_names
from tests.nodes.generation.conftest import Loaded, Nodes, empty
from tests.nodes.generation.test_sampling_nodes import ksampler


def custom_run(nodes: Nodes, loaded: Loaded, latent: dict, sampler: Any, sigmas: torch.Tensor, noise: Any = None,
               cfg: float = 3.0) -> dict:
    noise = noise if noise is not None else nodes.one("RandomNoise", noise_seed=7)
    guider = nodes.one("CFGGuider", model=loaded.model, positive=loaded.positive, negative=loaded.negative, cfg=cfg)
    return nodes.run("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas,
                     latent_image=latent)[0]


def schedule(nodes: Nodes, loaded: Loaded, steps: int, denoise: float = 1.0) -> torch.Tensor:
    return nodes.one("BasicScheduler", model=loaded.model, scheduler="simple", steps=steps, denoise=denoise)


@pytest.mark.parametrize("name", sampler_names())
def test_every_sampler_runs_in_ksampler_with_progress_and_previews(name: str, nodes: Nodes, loaded: Loaded) -> None:
    nodes.reports.calls.clear()
    out = ksampler(nodes, loaded, empty(nodes), sampler_name=name, steps=4)
    assert out["samples"].shape == (1, 16, 6, 8) and torch.isfinite(out["samples"]).all()
    assert [(value, total) for value, total, _ in nodes.reports.calls] == [(i, 4) for i in range(1, 5)]
    assert isinstance(nodes.reports.calls[-1][2], PILImage.Image)  # the last step always has a preview


def test_ancestral_noise_follows_the_seed(nodes: Nodes, loaded: Loaded) -> None:
    first = ksampler(nodes, loaded, empty(nodes), sampler_name="euler_ancestral", steps=4)["samples"]
    again = ksampler(nodes, loaded, empty(nodes), sampler_name="euler_ancestral", steps=4)["samples"]
    euler = ksampler(nodes, loaded, empty(nodes), sampler_name="euler", steps=4)["samples"]
    assert torch.equal(first, again) and not torch.allclose(first, euler)


def test_sampler_euler_ancestral_at_eta_zero_is_euler(nodes: Nodes, loaded: Loaded) -> None:
    sigmas = schedule(nodes, loaded, 4)
    plain = custom_run(nodes, loaded, empty(nodes), nodes.one("KSamplerSelect", sampler_name="euler"), sigmas)
    ancestral = nodes.one("SamplerEulerAncestral", eta=0.0, s_noise=1.0)
    torch.testing.assert_close(custom_run(nodes, loaded, empty(nodes), ancestral, sigmas)["samples"],
                               plain["samples"], rtol=1e-5, atol=1e-5)


def test_flowturbo_without_a_refiner_says_so_and_runs_heun_and_pseudo_steps(nodes: Nodes, loaded: Loaded) -> None:
    result = nodes.registry.get("SamplerFlowTurbo").make_hooks().run(heun_steps=1, pseudo_steps=5, refiner_steps=3)
    assert isinstance(result, NodeOutput)
    (message,) = result.ui["text"]
    assert "no velocity refiner" in message and "8 pseudo-corrector" in message
    (sampler,) = result.values
    assert dict(sampler.options) == {"heun_steps": 1, "pseudo_steps": 8}
    out = custom_run(nodes, loaded, empty(nodes), sampler, schedule(nodes, loaded, 9))
    assert torch.isfinite(out["samples"]).all()


def test_flowturbo_step_counts_must_match_the_schedule(nodes: Nodes, loaded: Loaded) -> None:
    sampler = nodes.one("SamplerFlowTurbo", heun_steps=1, pseudo_steps=5, refiner_steps=0)
    with pytest.raises(ValueError, match=r"^SamplerCustomAdvanced: flowturbo: .* set the scheduler's steps to 6"):
        custom_run(nodes, loaded, empty(nodes), sampler, schedule(nodes, loaded, 4))


def invert_and_regenerate(nodes: Nodes, loaded: Loaded, steps: int, denoise: float = 1.0,
                          sampler_name: str = "rf_solver") -> tuple[torch.Tensor, torch.Tensor]:
    clean = {"samples": torch.randn(1, 16, 6, 8, generator=torch.Generator().manual_seed(3))}
    sigmas = schedule(nodes, loaded, steps, denoise)
    sampler = nodes.one("KSamplerSelect", sampler_name=sampler_name)
    guider = nodes.one("CFGGuider", model=loaded.model, positive=loaded.positive, negative=loaded.negative, cfg=1.0)
    noise, inverted = nodes.run("InvertToNoise", guider=guider, sigmas=sigmas, latent_image=clean, sampler=sampler)
    regenerated = custom_run(nodes, loaded, clean, sampler, sigmas, noise=noise, cfg=1.0)
    return (regenerated["samples"] - clean["samples"]).abs().max(), inverted["samples"]


def test_inversion_round_trips_through_sampler_custom_advanced(nodes: Nodes, loaded: Loaded) -> None:
    coarse, inverted = invert_and_regenerate(nodes, loaded, 4)
    fine, _ = invert_and_regenerate(nodes, loaded, 16)
    assert fine < coarse / 4 and fine < 1e-2, (coarse, fine)
    assert inverted.shape == (1, 16, 6, 8)
    partial, _ = invert_and_regenerate(nodes, loaded, 8, denoise=0.5)  # to sigma ~0.5 and back
    assert partial < 1e-2


def test_inversion_defaults_to_rf_solver_and_refuses_stochastic_samplers(nodes: Nodes, loaded: Loaded) -> None:
    clean = {"samples": torch.randn(1, 16, 6, 8, generator=torch.Generator().manual_seed(4))}
    sigmas = schedule(nodes, loaded, 4)
    guider = nodes.one("BasicGuider", model=loaded.model, conditioning=loaded.positive)
    default_noise, _ = nodes.run("InvertToNoise", guider=guider, sigmas=sigmas, latent_image=clean)
    rf_noise, _ = nodes.run("InvertToNoise", guider=guider, sigmas=sigmas, latent_image=clean,
                            sampler=nodes.one("KSamplerSelect", sampler_name="rf_solver"))
    assert torch.equal(default_noise.state, rf_noise.state)
    for name in ("euler_ancestral", "dpmpp_2m"):
        with pytest.raises(ValueError, match=rf"^InvertToNoise: sampler: sampler '{name}' cannot invert"):
            nodes.run("InvertToNoise", guider=guider, sigmas=sigmas, latent_image=clean,
                      sampler=nodes.one("KSamplerSelect", sampler_name=name))
    with pytest.raises(ValueError, match="must end at sigma 0"):
        nodes.run("InvertToNoise", guider=guider, sigmas=sigmas[:-1], latent_image=clean)


def test_boss_pair_builds_a_schedule_from_one_cost_matrix(nodes: Nodes, loaded: Loaded) -> None:
    guider = nodes.one("CFGGuider", model=loaded.model, positive=loaded.positive, negative=loaded.negative, cfg=3.0)
    nodes.reports.calls.clear()
    cost = nodes.one("BOSSCostMatrix", guider=guider, latent_image=empty(nodes), grid_points=21, samples=2, seed=0)
    assert [total for _, total, _ in nodes.reports.calls] == [20] * 20  # one model call per grid step
    for steps in (1, 5, 20):
        sigmas = nodes.one("BOSSScheduler", cost=cost, steps=steps)
        assert sigmas.dtype == torch.float32 and len(sigmas) == steps + 1
        assert sigmas[0] == 1.0 and sigmas[-1] == 0.0 and bool((sigmas[:-1] > sigmas[1:]).all())
    out = custom_run(nodes, loaded, empty(nodes), nodes.one("KSamplerSelect", sampler_name="euler"),
                     nodes.one("BOSSScheduler", cost=cost, steps=5))
    assert torch.isfinite(out["samples"]).all()
    with pytest.raises(ValueError, match="BOSSScheduler: steps 21 is more than .* raise grid_points"):
        nodes.one("BOSSScheduler", cost=cost, steps=21)
    with pytest.raises(ValueError, match="BOSSScheduler: cost must be a BOSS_COST"):
        nodes.one("BOSSScheduler", cost=torch.zeros(3), steps=2)


def write_refiner(nodes: Nodes, name: str, channels: int, seed: int) -> str:
    """A small random velocity refiner file in the test models folder (output layer not zero)."""
    torch.manual_seed(seed)
    net = VelocityRefinerNet(RefinerConfig(latent_channels=channels, hidden_size=32, heads=4))
    for parameter in net.parameters():
        torch.nn.init.normal_(parameter, std=0.02)
    save_refiner(nodes.ctx.folders.models_dir / "velocity_refiners" / name, net, {})
    return name


def test_flowturbo_runs_its_refiner_steps_with_a_loaded_refiner(nodes: Nodes, loaded: Loaded) -> None:
    refiner = nodes.one("VelocityRefinerLoader", refiner_name=write_refiner(nodes, "tiny-refiner.safetensors", 16, 0))
    sigmas = schedule(nodes, loaded, 9)
    with_refiner = nodes.one("SamplerFlowTurbo", heun_steps=1, pseudo_steps=5, refiner_steps=3, refiner=refiner)
    nodes.reports.calls.clear()
    refined = custom_run(nodes, loaded, empty(nodes), with_refiner, sigmas)["samples"]
    assert [value for value, _, _ in nodes.reports.calls] == list(range(1, 10))  # refiner steps report too
    zero = nodes.one("SamplerFlowTurbo", heun_steps=1, pseudo_steps=8, refiner_steps=0)
    assert torch.isfinite(refined).all()
    assert not torch.allclose(refined, custom_run(nodes, loaded, empty(nodes), zero, sigmas)["samples"])


def test_a_refiner_for_other_latents_is_refused_by_name(nodes: Nodes, loaded: Loaded) -> None:
    refiner = nodes.one("VelocityRefinerLoader", refiner_name=write_refiner(nodes, "four-channel.safetensors", 4, 1))
    sampler = nodes.one("SamplerFlowTurbo", heun_steps=1, pseudo_steps=5, refiner_steps=3, refiner=refiner)
    with pytest.raises(ValueError, match=r"^SamplerCustomAdvanced: .*'four-channel.safetensors' works on 4-channel "
                                         r"latents but the model's have 16"):
        custom_run(nodes, loaded, empty(nodes), sampler, schedule(nodes, loaded, 9))
