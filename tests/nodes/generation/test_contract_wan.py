"""The model contract's proof for Wan: video latents through the real nodes equal a plain loop over the module.

A tiny random-weight diffusers `WanTransformer3DModel` is written to models/diffusion_models and loaded
by the real UNETLoader through the executor; a 5-D LATENT [1, 16, T, H, W] with several frames and the
CONDITIONING come from test-only nodes (Wan's text encoder and EmptyHunyuanLatentVideo land in later
issues). KSampler and SamplerCustomAdvanced (RandomNoise, CFGGuider with a negative, KSamplerSelect,
BasicScheduler) run euler, heun and rf_solver; each result must equal a loop written here from the
definitions, calling the diffusers module directly: ComfyUI's seeded noise, the flow interpolant,
classifier-free guidance, Wan's timestep in training steps and its 512-token text, and each solver's
update. Only the sigmas come from `compute_sigmas` (that schedule is tested on its own elsewhere),
at Wan 2.1's shift of 5.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pytest
import torch
from torch import nn

from engine.events import ExecutionFailed, NodePreview
from engine.node_api import Int, NodeOutput, node
from engine.paths import Folders
from engine.registry import NodeRegistry
from engine.types import Conditioning, Latent
from sampling.flow import FlowSampling
from sampling.samplers import SAMPLERS
from sampling.schedules import compute_sigmas
from tests.fixtures.pipeline import Pipeline, scratch_folders
from tests.fixtures.tiny_wan import TEXT_DIM, build_wan, write_wan

# Tiny models on a shared machine: one thread is many times faster than contended ones.
pytestmark = pytest.mark.usefixtures("one_torch_thread")

UNET = "tiny-wan.safetensors"
SHAPE = (1, 16, 3, 6, 8)  # three latent frames: the time axis takes part in attention and rotary positions
STEPS, CFG, SEED, SCHEDULER = 4, 4.0, 11, "simple"
POSITIVE_SEED, NEGATIVE_SEED = 1, 2
# Flowmill's names for the samplers under test; rf_solver is RF-Solver-2.
SAMPLER_NAMES = ("euler", "heun", "rf_solver")

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def text_tokens(seed: int, tokens: int) -> torch.Tensor:
    """A seeded stand-in for umT5's output: [1, tokens, TEXT_DIM]."""
    return torch.randn(1, tokens, TEXT_DIM, generator=torch.Generator().manual_seed(seed))


@node(id="TestWanVideoLatent", category="testing")
def wan_video_latent(
    frames: Annotated[int, Int(3, min=1, max=64)],
    height: Annotated[int, Int(6, min=1, max=256)],
    width: Annotated[int, Int(8, min=1, max=256)],
) -> Latent:
    """An all-zero 16-channel video latent [1, 16, frames, height, width] (what EmptyHunyuanLatentVideo makes)."""
    return {"samples": torch.zeros(1, 16, frames, height, width)}


@node(id="TestWanText", category="testing")
def wan_text(
    seed: Annotated[int, Int(0, min=0, max=1000)],
    tokens: Annotated[int, Int(7, min=1, max=512)],
) -> Conditioning:
    """A seeded text sequence as ComfyUI's CONDITIONING [[tokens [1, n, 32], {}]], shorter than umT5's 512."""
    return [[text_tokens(seed, tokens), {}]]


@node(id="TestLatentOut", category="testing", output=True)
def latent_out(samples: Latent) -> NodeOutput:
    """An output node, so the graph runs; reports the latent's shape."""
    return NodeOutput(ui={"shape": [list(samples["samples"].shape)]})


@pytest.fixture(scope="module")
def module() -> nn.Module:
    return build_wan(seed=3)


@pytest.fixture(scope="module")
def models_dir(module: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wan-models")
    write_wan(root / "diffusion_models" / UNET, module)
    return root


@pytest.fixture
def folders(tmp_path: Path, models_dir: Path) -> Folders:
    return scratch_folders(models_dir, tmp_path)


@pytest.fixture
def registry() -> NodeRegistry:
    built = NodeRegistry()
    built.discover("nodes")
    for function in (wan_video_latent, wan_text, latent_out):
        built.register(function.node_spec)  # type: ignore[attr-defined]
    return built


def _inputs() -> dict[str, Any]:
    return {
        "unet": {"class_type": "UNETLoader", "inputs": {"unet_name": UNET, "weight_dtype": "default"}},
        "latent": {"class_type": "TestWanVideoLatent", "inputs": {"frames": SHAPE[2], "height": SHAPE[3],
                                                                  "width": SHAPE[4]}},
        "pos": {"class_type": "TestWanText", "inputs": {"seed": POSITIVE_SEED, "tokens": 7}},
        "neg": {"class_type": "TestWanText", "inputs": {"seed": NEGATIVE_SEED, "tokens": 5}},
    }


def ksampler_graph(sampler: str) -> dict[str, Any]:
    return _inputs() | {
        "sample": {"class_type": "KSampler", "inputs": {
            "model": ["unet", 0], "seed": SEED, "steps": STEPS, "cfg": CFG, "sampler_name": sampler,
            "scheduler": SCHEDULER, "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": ["latent", 0],
            "denoise": 1.0}},
        "out": {"class_type": "TestLatentOut", "inputs": {"samples": ["sample", 0]}},
    }


def custom_graph(sampler: str) -> dict[str, Any]:
    return _inputs() | {
        "noise": {"class_type": "RandomNoise", "inputs": {"noise_seed": SEED}},
        "guider": {"class_type": "CFGGuider", "inputs": {"model": ["unet", 0], "positive": ["pos", 0],
                                                         "negative": ["neg", 0], "cfg": CFG}},
        "select": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": sampler}},
        "sigmas": {"class_type": "BasicScheduler", "inputs": {"model": ["unet", 0], "scheduler": SCHEDULER,
                                                              "steps": STEPS, "denoise": 1.0}},
        "custom": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["noise", 0], "guider": ["guider", 0], "sampler": ["select", 0], "sigmas": ["sigmas", 0],
            "latent_image": ["latent", 0]}},
        "out": {"class_type": "TestLatentOut", "inputs": {"samples": ["custom", 0]}},
    }


# --- The plain loop, from the definitions ------------------------------------------------------------


def wan_text_context(tokens: torch.Tensor) -> torch.Tensor:
    """Wan's text context: the sequence zero-padded to umT5's 512 tokens."""
    return torch.cat([tokens, tokens.new_zeros(1, 512 - tokens.shape[1], TEXT_DIM)], dim=1)


def guided_velocity(module: nn.Module) -> Velocity:
    """Classifier-free guidance of the flow velocity: uncond + cfg * (cond - uncond), with Wan's timestep
    in training steps (flow time x 1000)."""
    positive = wan_text_context(text_tokens(POSITIVE_SEED, 7))
    negative = wan_text_context(text_tokens(NEGATIVE_SEED, 5))

    def velocity(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        timestep = (sigma * 1000).reshape(1)
        with torch.no_grad():
            cond = module(hidden_states=x, timestep=timestep, encoder_hidden_states=positive, return_dict=False)[0]
            uncond = module(hidden_states=x, timestep=timestep, encoder_hidden_states=negative, return_dict=False)[0]
        return uncond + CFG * (cond - uncond)

    return velocity


def reference_run(module: nn.Module, sampler: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(the final latent, the last step's x0 prediction) of a plain loop over the module."""
    sigmas = compute_sigmas(FlowSampling.sd3(5.0), SCHEDULER, STEPS, 1.0)
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(SEED))  # ComfyUI's prepare_noise
    x = sigmas[0] * noise + (1 - sigmas[0]) * torch.zeros(SHAPE)  # the flow interpolant at the first sigma
    velocity_at = guided_velocity(module)
    denoised = x
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        h = sigma_next - sigma
        v = velocity_at(x, sigma)
        denoised = x - sigma * v  # x = (1 - s) x0 + s noise and v = noise - x0 give x0 = x - s v
        if sampler == "euler" or (sampler == "heun" and sigma_next == 0):
            x = x + h * v
        elif sampler == "heun":  # trapezoid: the mean of the slopes at both ends of an Euler predictor
            x = x + h / 2 * (v + velocity_at(x + h * v, sigma_next))
        elif sampler == "rf_solver":
            # RF-Solver-2 (Wang et al. 2024, eq. 8): x + h v + h^2/2 dv/dsigma, with the derivative from the
            # velocity half a step ahead.
            half = h / 2
            derivative = (velocity_at(x + half * v, sigma + half) - v) / half
            x = x + h * v + 0.5 * h**2 * derivative
        else:
            raise AssertionError(sampler)
    return x, denoised


# --- The proof -------------------------------------------------------------------------------------


def test_the_samplers_under_test_are_registered() -> None:
    assert set(SAMPLER_NAMES) <= set(SAMPLERS)


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_ksampler_equals_the_plain_loop(pipeline: Pipeline, module: nn.Module, sampler: str) -> None:
    outcome = pipeline.run(ksampler_graph(sampler))
    result = outcome.value("sample")["samples"]
    expected, _ = reference_run(module, sampler)
    assert result.shape == SHAPE and outcome.result.outputs["out"] == {"shape": [list(SHAPE)]}
    assert torch.allclose(result, expected, atol=1e-5, rtol=0), (result - expected).abs().max()
    # Sampling moved the latent far from its noise: the comparison is not between two near-zero tensors.
    assert expected.abs().mean() > 0.1


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_sampler_custom_advanced_equals_the_plain_loop(pipeline: Pipeline, module: nn.Module, sampler: str) -> None:
    outcome = pipeline.run(custom_graph(sampler))
    output, denoised = outcome.result.values["custom"]
    expected, expected_denoised = reference_run(module, sampler)
    assert torch.allclose(output[0]["samples"], expected, atol=1e-5, rtol=0)
    assert torch.allclose(denoised[0]["samples"], expected_denoised, atol=1e-5, rtol=0)


def test_the_guidance_and_the_frames_matter(module: nn.Module) -> None:
    """The proof would be weak if cfg or the time axis changed nothing: check that each does."""
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    positive = wan_text_context(text_tokens(POSITIVE_SEED, 7))
    negative = wan_text_context(text_tokens(NEGATIVE_SEED, 5))
    with torch.no_grad():
        cond = module(hidden_states=x, timestep=torch.tensor([500.0]), encoder_hidden_states=positive,
                      return_dict=False)[0]
        uncond = module(hidden_states=x, timestep=torch.tensor([500.0]), encoder_hidden_states=negative,
                        return_dict=False)[0]
        first_frame = module(hidden_states=x[:, :, :1], timestep=torch.tensor([500.0]),
                             encoder_hidden_states=positive, return_dict=False)[0]
    assert (cond - uncond).abs().max() > 1e-2
    assert (cond[:, :, :1] - first_frame).abs().max() > 1e-3  # frames attend to each other


def test_sampling_a_video_reports_progress_with_previews(pipeline: Pipeline) -> None:
    outcome = pipeline.run(ksampler_graph("euler"))
    previews = [event for event in outcome.events if isinstance(event, NodePreview) and event.node_id == "sample"]
    assert previews, "no preview of the video latent"
    assert previews[-1].image.size == (SHAPE[4] * 8, SHAPE[3] * 8)  # the first frame at image size


def test_an_image_latent_is_refused_by_a_video_model(pipeline: Pipeline) -> None:
    graph = ksampler_graph("euler") | {
        "latent": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 48, "batch_size": 1}}}
    outcome = pipeline.run(graph, expect="error")
    failure = outcome.result.failure
    assert isinstance(failure, ExecutionFailed) and failure.node_id == "sample"
    assert ("KSampler: latent_image must hold a non-empty [batch, channels, frames, height, width] latent, "
            "got (1, 16, 6, 8)") in failure.exception_message
