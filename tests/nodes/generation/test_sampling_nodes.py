"""Sampler nodes called directly on a tiny random-weight FLUX-architecture model."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from engine.context import Interrupted
from modeling.latent_preview import LatentPreview
from modeling.model_refs import WeightsSource
from modeling.previews import PreviewPacer
from sampling.flow import FlowSampling
from sampling.noise import seeded_noise
from sampling.schedules import compute_sigmas
from tests.nodes.generation.conftest import FOLDER_CHECKPOINT, UNET, Loaded, Nodes, empty

STEPS = 3


def ksampler(nodes: Nodes, loaded: Loaded, latent: dict, **overrides: Any) -> dict:
    inputs = {"model": loaded.model, "seed": 7, "steps": STEPS, "cfg": 3.0, "sampler_name": "euler",
              "scheduler": "simple", "positive": loaded.positive, "negative": loaded.negative,
              "latent_image": latent, "denoise": 1.0} | overrides
    return nodes.one("KSampler", **inputs)


def custom(nodes: Nodes, loaded: Loaded, latent: dict, **overrides: Any) -> tuple[dict, dict]:
    settings = {"seed": 7, "steps": STEPS, "cfg": 3.0, "sampler_name": "euler", "scheduler": "simple",
                "denoise": 1.0, "model": loaded.model} | overrides
    noise = nodes.one("RandomNoise", noise_seed=settings["seed"])
    guider = nodes.one("CFGGuider", model=settings["model"], positive=loaded.positive, negative=loaded.negative,
                       cfg=settings["cfg"])
    sampler = nodes.one("KSamplerSelect", sampler_name=settings["sampler_name"])
    sigmas = nodes.one("BasicScheduler", model=settings["model"], scheduler=settings["scheduler"],
                       steps=settings["steps"], denoise=settings["denoise"])
    return nodes.run("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=sigmas,
                     latent_image=latent)


def test_ksampler_output_is_finite_and_keeps_shape(nodes: Nodes, loaded: Loaded) -> None:
    latent = empty(nodes, batch=2)
    out = ksampler(nodes, loaded, latent)
    assert out["samples"].shape == (2, 16, 6, 8) and out["samples"].dtype == torch.float32
    assert torch.isfinite(out["samples"]).all() and out["samples"].device == torch.device("cpu")
    assert not torch.equal(out["samples"][0], out["samples"][1])  # each batch item has its own noise


def test_same_seed_same_latent_other_seed_other_latent(nodes: Nodes, loaded: Loaded) -> None:
    first = ksampler(nodes, loaded, empty(nodes))["samples"]
    again = ksampler(nodes, loaded, empty(nodes))["samples"]
    other = ksampler(nodes, loaded, empty(nodes), seed=8)["samples"]
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_empty_4_channel_latent_is_widened_for_a_16_channel_model(nodes: Nodes, loaded: Loaded) -> None:
    narrow = empty(nodes, node="EmptyLatentImage")
    assert narrow["samples"].shape[1] == 4
    widened = ksampler(nodes, loaded, narrow)["samples"]
    assert widened.shape == (1, 16, 6, 8)
    assert torch.equal(widened, ksampler(nodes, loaded, empty(nodes))["samples"])
    output, denoised = custom(nodes, loaded, narrow)
    assert output["samples"].shape == denoised["samples"].shape == (1, 16, 6, 8)


def test_a_non_empty_latent_of_the_wrong_width_is_an_error(nodes: Nodes, loaded: Loaded) -> None:
    with pytest.raises(ValueError, match=r"KSampler: latent_image has 4 channels but the model works on "
                                         r"16-channel latents \(shape \(1, 4, 6, 8\)\)"):
        ksampler(nodes, loaded, {"samples": torch.ones(1, 4, 6, 8)})
    with pytest.raises(ValueError, match=r"KSampler: latent_image must hold a non-empty"):
        ksampler(nodes, loaded, {"samples": torch.ones(16, 6, 8)})
    with pytest.raises(ValueError, match=r"KSampler: latent_image carries a noise_mask"):
        ksampler(nodes, loaded, {"samples": torch.zeros(1, 16, 6, 8), "noise_mask": torch.ones(1, 1, 48, 64)})


def test_conditioning_of_the_wrong_shape_is_an_error(nodes: Nodes, loaded: Loaded) -> None:
    hidden, extras = loaded.positive[0]
    narrow = [[hidden[..., :32], extras]]
    with pytest.raises(ValueError, match=r"KSampler: positive\[0\]: the text sequence is 32 wide but the "
                                         r"model expects 64"):
        ksampler(nodes, loaded, empty(nodes), positive=narrow)
    with pytest.raises(ValueError, match=r"KSampler: negative\[0\] must hold a \[batch, tokens, width\] tensor, "
                                         r"got \(\d+, 64\)"):
        ksampler(nodes, loaded, empty(nodes), negative=[[hidden[0], extras]])
    with pytest.raises(ValueError, match=r"KSampler: positive\[0\]: its pooled_output must have shape .* got none"):
        ksampler(nodes, loaded, empty(nodes), positive=[[hidden, {}]])
    with pytest.raises(ValueError, match=r"KSampler: negative must be a non-empty CONDITIONING list"):
        ksampler(nodes, loaded, empty(nodes), negative=[])
    with pytest.raises(ValueError, match=r"CFGGuider: positive\[0\]: the pooled_output is 8 wide"):
        nodes.one("CFGGuider", model=loaded.model, positive=[[hidden, {"pooled_output": torch.ones(1, 8)}]],
                  negative=loaded.negative, cfg=2.0)
    with pytest.raises(ValueError, match=r"BasicGuider: model must be a MODEL from a loader node"):
        nodes.one("BasicGuider", model="not a model", conditioning=loaded.positive)


def test_progress_once_per_step_with_paced_previews(nodes: Nodes, loaded: Loaded) -> None:
    for sampler_name in ("euler", "heun"):
        nodes.reports.calls.clear()
        ksampler(nodes, loaded, empty(nodes), sampler_name=sampler_name)
        assert [(value, total) for value, total, _ in nodes.reports.calls] == [(i, STEPS) for i in range(1, STEPS + 1)]
        previews = [preview for _, _, preview in nodes.reports.calls]
        assert previews[0] is not None and previews[-1] is not None  # the first and the last are always sent
        for preview in filter(None, previews):
            # shown at image size: 8 pixels per latent pixel
            assert isinstance(preview, PILImage.Image) and preview.mode == "RGB" and preview.size == (64, 48)


def test_preview_pacer_sends_the_first_and_last_and_at_most_one_per_interval() -> None:
    times = iter([0.0, 0.01, 0.02, 0.06, 0.07, 0.2, 0.21])
    pacer = PreviewPacer(interval=0.05, clock=lambda: next(times))
    assert [pacer.due(step, 7) for step in range(1, 8)] == [True, False, False, True, False, True, True]


def test_preview_uses_the_models_projection_or_the_generic_one(nodes: Nodes, loaded: Loaded, tmp_path: Path) -> None:
    # A copy of the checkpoint whose VAE ships a preview map that paints everything black.
    folder = shutil.copytree(Path(loaded.model.source.path), tmp_path / "black-preview")
    LatentPreview(torch.zeros(16, 3), torch.zeros(3)).save(folder / "vae" / "latent_preview.json")
    black = replace(loaded.model, source=WeightsSource(str(folder), "black-preview"))
    ksampler(nodes, loaded, empty(nodes), model=black)
    previews = [preview for *_, preview in nodes.reports.calls if preview is not None]
    assert previews and all(not np.asarray(preview).any() for preview in previews)
    nodes.reports.calls.clear()
    bare = nodes.one("UNETLoader", unet_name=UNET, weight_dtype="default")
    with nodes.models.use(bare) as model:
        assert model.latent_preview is None
    ksampler(nodes, loaded, empty(nodes), model=bare)
    previews = [preview for *_, preview in nodes.reports.calls if preview is not None]
    assert len(nodes.reports.calls) == STEPS and previews and all(isinstance(p, PILImage.Image) for p in previews)


def test_interrupt_stops_sampling_at_a_step(nodes: Nodes, loaded: Loaded) -> None:
    nodes.interrupt.set()
    with pytest.raises(Interrupted):
        ksampler(nodes, loaded, empty(nodes))
    assert nodes.reports.calls == []


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"sampler_name": "heun", "scheduler": "karras", "cfg": 5.0},
        {"scheduler": "beta", "denoise": 0.6, "steps": 4},
        {"cfg": 1.0},
    ],
)
def test_ksampler_equals_sampler_custom_advanced(nodes: Nodes, loaded: Loaded, settings: dict) -> None:
    latent = nodes.one("VAEEncode", pixels=torch.rand(1, 48, 64, 3, generator=torch.Generator().manual_seed(3)),
                       vae=nodes.run("CheckpointLoaderSimple", ckpt_name=FOLDER_CHECKPOINT)[2])
    expected = ksampler(nodes, loaded, latent, **settings)["samples"]
    output, denoised = custom(nodes, loaded, latent, **settings)
    assert torch.equal(output["samples"], expected)
    assert denoised["samples"].shape == expected.shape and torch.isfinite(denoised["samples"]).all()


def test_basic_guider_equals_cfg_one(nodes: Nodes, loaded: Loaded) -> None:
    latent = empty(nodes)
    guider = nodes.one("BasicGuider", model=loaded.model, conditioning=loaded.positive)
    sampler = nodes.one("KSamplerSelect", sampler_name="euler")
    sigmas = nodes.one("BasicScheduler", model=loaded.model, scheduler="simple", steps=STEPS, denoise=1.0)
    output, _ = nodes.run("SamplerCustomAdvanced", noise=nodes.one("RandomNoise", noise_seed=7), guider=guider,
                          sampler=sampler, sigmas=sigmas, latent_image=latent)
    assert torch.equal(output["samples"], ksampler(nodes, loaded, latent, cfg=1.0)["samples"])


def test_denoised_output_is_the_last_clean_prediction(nodes: Nodes, loaded: Loaded) -> None:
    output, denoised = custom(nodes, loaded, empty(nodes))
    # The last Euler step lands on sigma 0, where x equals the x0 prediction it stepped with.
    assert torch.allclose(output["samples"], denoised["samples"], atol=1e-5)


def test_zero_denoise_returns_the_latent(nodes: Nodes, loaded: Loaded) -> None:
    latent = {"samples": torch.randn(1, 16, 6, 8, generator=torch.Generator().manual_seed(2))}
    out = ksampler(nodes, loaded, latent, denoise=0.0)
    assert torch.equal(out["samples"], latent["samples"]) and nodes.reports.calls == []
    output, denoised = custom(nodes, loaded, latent, denoise=0.0)
    assert torch.equal(output["samples"], latent["samples"]) and torch.equal(denoised["samples"], latent["samples"])


def test_noise_follows_batch_index(nodes: Nodes, loaded: Loaded) -> None:
    batch = ksampler(nodes, loaded, empty(nodes, batch=2))["samples"]
    second = ksampler(nodes, loaded, {"samples": torch.zeros(1, 16, 6, 8), "batch_index": [1]})
    assert second["batch_index"] == [1]
    assert torch.allclose(second["samples"][0], batch[1], atol=1e-5)
    assert torch.equal(nodes.one("RandomNoise", noise_seed=7).generate_noise({"samples": torch.zeros(2, 16, 6, 8)}),
                       seeded_noise(7, (2, 16, 6, 8)))


def test_combined_conditionings_average(nodes: Nodes, loaded: Loaded) -> None:
    doubled = loaded.positive + loaded.positive
    single = ksampler(nodes, loaded, empty(nodes))["samples"]
    assert torch.allclose(ksampler(nodes, loaded, empty(nodes), positive=doubled)["samples"], single, atol=1e-5)


def test_model_sampling_nodes_change_the_sigmas(nodes: Nodes, loaded: Loaded) -> None:
    def sigmas(model: Any) -> torch.Tensor:
        return nodes.one("BasicScheduler", model=model, scheduler="simple", steps=4, denoise=1.0)

    base = sigmas(loaded.model)
    sd3 = nodes.one("ModelSamplingSD3", model=loaded.model, shift=6.0)
    flux = nodes.one("ModelSamplingFlux", model=loaded.model, max_shift=1.15, base_shift=0.5, width=1024, height=1024)
    assert sd3.weights_key == loaded.model.weights_key and sd3.sampling == FlowSampling.sd3(6.0)
    assert flux.sampling == FlowSampling.flux(1024, 1024, base_shift=0.5, max_shift=1.15)
    assert torch.equal(sigmas(sd3), compute_sigmas(FlowSampling.sd3(6.0), "simple", 4))
    assert not torch.allclose(sigmas(sd3), base) and not torch.allclose(sigmas(flux), base)
    assert (sigmas(sd3)[1:-1] > base[1:-1]).all()  # a larger shift keeps more steps at high noise
    small = nodes.one("ModelSamplingFlux", model=loaded.model, max_shift=1.15, base_shift=0.5, width=256, height=256)
    assert (sigmas(small)[1:-1] < sigmas(flux)[1:-1]).all()  # fewer pixels, less shift
    latent = empty(nodes)
    assert not torch.allclose(ksampler(nodes, loaded, latent, model=sd3)["samples"],
                              ksampler(nodes, loaded, latent)["samples"])


def test_scheduler_and_sampler_names_are_checked(nodes: Nodes, loaded: Loaded) -> None:
    with pytest.raises(ValueError, match=r"unknown sampler 'dpmpp_9m'"):
        nodes.one("KSamplerSelect", sampler_name="dpmpp_9m")
    with pytest.raises(ValueError, match=r"bogus"):
        nodes.one("BasicScheduler", model=loaded.model, scheduler="bogus", steps=4, denoise=1.0)


def test_sampler_custom_advanced_checks_its_sockets(nodes: Nodes, loaded: Loaded) -> None:
    noise = nodes.one("RandomNoise", noise_seed=1)
    guider = nodes.one("CFGGuider", model=loaded.model, positive=loaded.positive, negative=loaded.negative, cfg=2.0)
    sampler = nodes.one("KSamplerSelect", sampler_name="euler")
    sigmas = nodes.one("BasicScheduler", model=loaded.model, scheduler="simple", steps=2, denoise=1.0)
    good = {"noise": noise, "guider": guider, "sampler": sampler, "sigmas": sigmas, "latent_image": empty(nodes)}
    cases = {
        "noise": (7, r"noise must be a NOISE"),
        "guider": (loaded.model, r"guider must be a GUIDER from CFGGuider or BasicGuider, got ModelRef"),
        "sampler": ("euler", r"sampler must be a SAMPLER"),
        "sigmas": (sigmas[None], r"sigmas must be a 1-D SIGMAS tensor .* got \(1, 3\)"),
    }
    for name, (value, message) in cases.items():
        with pytest.raises(ValueError, match=rf"SamplerCustomAdvanced: {message}"):
            nodes.run("SamplerCustomAdvanced", **(good | {name: value}))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_seed_gives_the_same_latent_on_cuda(registry: Any, folders: Any) -> None:
    results = []
    for device in ("cpu", "cuda"):
        runner = Nodes(registry, folders, device)
        model, clip, _ = runner.run("CheckpointLoaderSimple", ckpt_name=FOLDER_CHECKPOINT)
        assert model.device.type == device
        loaded = Loaded(model, runner.one("CLIPTextEncode", text="a red circle", clip=clip),
                        runner.one("CLIPTextEncode", text="", clip=clip))
        out = ksampler(runner, loaded, empty(runner))["samples"]
        assert out.device == torch.device("cpu")
        results.append(out)
    # Same CPU noise on both devices; only kernel rounding (TF32 matmuls included) differs.
    assert torch.allclose(results[0], results[1], rtol=1e-2, atol=1e-2)
