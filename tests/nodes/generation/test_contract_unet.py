"""The model contract's proof for discrete VP models: tiny random-weight diffusers UNets (SD1-like with eps, the
same weights with v prediction from a pipeline folder's scheduler_config.json or from ModelSamplingDiscrete,
and an SDXL-like one) loaded by UNETLoader and run through KSampler and SamplerCustomAdvanced with euler,
heun and rf_solver, by the real executor. Each output must match a plain loop over the same diffusers module
to 1e-5. The loop is written here from the definitions, not from Flowmill's wrapper: the VP image and the
nearest table timestep the model reads, x0 and the noise from its eps or v, the flow-time sampler update;
for euler also k-diffusion's form (x = x0 + sigma eps), which needs no flow conversion at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pytest
import torch

from engine.node_api import AnyValue, Conditioning, Int, NodeOutput, node
from engine.registry import NodeRegistry
from sampling.discrete_vp import DiscreteVP
from sampling.schedules import compute_sigmas, get_scheduler
from tests.fixtures.pipeline import Pipeline, scratch_folders
from tests.fixtures.tiny_models import build_flux
from tests.fixtures.tiny_unets import (
    SDXL_POOLED_WIDTH,
    SDXL_TEXT_WIDTH,
    TEXT_WIDTH,
    build_unet,
    sd1_config,
    sdxl_config,
    write_file,
    write_pipeline_folder,
)

SEED, STEPS, CFG = 7, 3, 2.5
WIDTH, HEIGHT = 64, 48  # a 6 x 8 latent
SDXL_SIZES = {"width": 1024, "height": 768, "crop_w": 0, "crop_h": 0, "target_width": 1024, "target_height": 768}


def text(seed: int, width: int, pooled: int, sizes: int) -> list:
    """A CONDITIONING of seeded random text features (the real encoders land in later issues)."""
    generator = torch.Generator().manual_seed(seed)
    extras: dict[str, Any] = {}
    hidden = torch.randn(1, 5, width, generator=generator)
    if pooled:
        extras["pooled_output"] = torch.randn(1, pooled, generator=generator)
    if sizes:
        extras.update(SDXL_SIZES)  # as CLIPTextEncodeSDXL writes them
    return [[hidden, extras]]


@node(id="TestUNetText", category="testing")
def random_unet_text(
    seed: Annotated[int, Int(0, min=0, max=1000)],
    width: Annotated[int, Int(16, min=1, max=4096)],
    pooled: Annotated[int, Int(0, min=0, max=4096)],
    sizes: Annotated[int, Int(0, min=0, max=1)],
) -> Conditioning:
    """Seeded random text features: [1, 5, width], a pooled vector when pooled > 0, SDXL size ids when sizes is 1."""
    return text(seed, width, pooled, sizes)


@node(id="TestKeep", category="testing", output=True)
def keep_for_test(value: AnyValue) -> NodeOutput:
    """An output node that makes the executor run what feeds it; the test reads the value from the run."""
    return NodeOutput(ui={"kept": [type(value).__name__]})


@dataclass(frozen=True)
class Variant:
    """A model as the graph loads it, and what the plain loop needs to know about it."""

    name: str
    unet_name: str
    prediction: str
    sdxl: bool = False
    sampling_node: bool = False  # v prediction set by ModelSamplingDiscrete rather than the folder
    scheduler: str = "karras"

    def conditioning_inputs(self, seed: int, sizes: int) -> dict[str, int]:
        if self.sdxl:
            return {"seed": seed, "width": SDXL_TEXT_WIDTH, "pooled": SDXL_POOLED_WIDTH, "sizes": sizes}
        return {"seed": seed, "width": TEXT_WIDTH, "pooled": 0, "sizes": 0}


VARIANTS = [
    Variant("sd1-eps", "tiny-unet.safetensors", "eps", scheduler="karras"),
    Variant("sd1-v-folder", "tiny-unet-v", "v", scheduler="normal"),
    Variant("sd1-v-node", "tiny-unet.safetensors", "v", sampling_node=True, scheduler="exponential"),
    Variant("sdxl-eps", "tiny-unet-xl.safetensors", "eps", sdxl=True, scheduler="simple"),
]


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("unet-models")
    sd1, sdxl = build_unet(sd1_config()), build_unet(sdxl_config(), seed=4)
    diffusion_models = root / "diffusion_models"
    write_file(diffusion_models / "tiny-unet.safetensors", sd1)
    write_pipeline_folder(diffusion_models / "tiny-unet-v", sd1, sd1_config(), "v_prediction")
    write_file(diffusion_models / "tiny-unet-xl.safetensors", sdxl, sdxl_config())
    write_file(diffusion_models / "tiny-flux.safetensors", build_flux())  # a flow model, for the refusals
    return {"root": root, "sd1": sd1, "sdxl": sdxl}


@pytest.fixture
def pipeline(modules: dict[str, Any], tmp_path: Path) -> Pipeline:
    registry = NodeRegistry()
    registry.discover("nodes")
    registry.register(random_unet_text.node_spec)
    registry.register(keep_for_test.node_spec)
    folders = scratch_folders(modules["root"], tmp_path)
    return Pipeline(registry, folders)


def graph(variant: Variant, route: str, sampler: str) -> dict[str, Any]:
    model: list = ["loader", 0]
    prompt: dict[str, Any] = {
        "loader": {"class_type": "UNETLoader", "inputs": {"unet_name": variant.unet_name, "weight_dtype": "default"}},
        "positive": {"class_type": "TestUNetText", "inputs": variant.conditioning_inputs(1, sizes=1)},
        "negative": {"class_type": "TestUNetText", "inputs": variant.conditioning_inputs(2, sizes=0)},
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": WIDTH, "height": HEIGHT, "batch_size": 1}},
        "keep": {"class_type": "TestKeep", "inputs": {"value": ["sample", 0]}},
    }
    if variant.sampling_node:
        prompt["discrete"] = {"class_type": "ModelSamplingDiscrete",
                              "inputs": {"model": model, "sampling": "v_prediction", "zsnr": False}}
        model = ["discrete", 0]
    if route == "ksampler":
        prompt["sample"] = {"class_type": "KSampler", "inputs": {
            "model": model, "seed": SEED, "steps": STEPS, "cfg": CFG, "sampler_name": sampler,
            "scheduler": variant.scheduler, "positive": ["positive", 0], "negative": ["negative", 0],
            "latent_image": ["latent", 0], "denoise": 1.0}}
    else:
        prompt |= {
            "noise": {"class_type": "RandomNoise", "inputs": {"noise_seed": SEED}},
            "guider": {"class_type": "CFGGuider", "inputs": {"model": model, "positive": ["positive", 0],
                                                             "negative": ["negative", 0], "cfg": CFG}},
            "select": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": sampler}},
            "sigmas": {"class_type": "BasicScheduler", "inputs": {"model": model, "scheduler": variant.scheduler,
                                                                  "steps": STEPS, "denoise": 1.0}},
            "sample": {"class_type": "SamplerCustomAdvanced", "inputs": {
                "noise": ["noise", 0], "guider": ["guider", 0], "sampler": ["select", 0], "sigmas": ["sigmas", 0],
                "latent_image": ["latent", 0]}},
        }
    return prompt


# ---- the plain loop, from the definitions -------------------------------------------------------------------

def sd_sigma_table() -> torch.Tensor:
    """The k-diffusion sigma sqrt((1 - a_t) / a_t) of SD's 1000 timesteps (betas linear in their square root)."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1 - betas, dim=0)
    return ((1 - alphas_cumprod) / alphas_cumprod).sqrt().float().double()


def nearest_timestep(sigma: float) -> float:
    """ComfyUI's rule: the table timestep nearest in log sigma."""
    return float((sd_sigma_table().log() - math.log(sigma)).abs().argmin())


class PlainUNet:
    """One CFG evaluation of the diffusers module on the VP image: positive and negative as one batch of two."""

    def __init__(self, module: Any, variant: Variant, latent: torch.Tensor) -> None:
        self.module, self.variant = module, variant
        # The graph's two TestUNetText nodes: the positive with SDXL's size ids, the negative without.
        positive, negative = (text(**variant.conditioning_inputs(seed, sizes))[0] for seed, sizes in ((1, 1), (2, 0)))
        self.context = torch.cat([positive[0], negative[0]])
        self.added = None
        if variant.sdxl:
            pixels_h, pixels_w = latent.shape[-2] * 8, latent.shape[-1] * 8  # ComfyUI: missing sizes are the latent's
            self.added = {"text_embeds": torch.cat([positive[1]["pooled_output"], negative[1]["pooled_output"]]),
                          "time_ids": torch.tensor([[768, 1024, 0, 0, 768, 1024],
                                                    [pixels_h, pixels_w, 0, 0, pixels_h, pixels_w]])}

    def predict(self, vp_image: torch.Tensor, timestep: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(positive, negative) raw predictions (eps or v) for the VP image at `timestep`."""
        output = self.module(torch.cat([vp_image, vp_image]), torch.full((2,), timestep),
                             encoder_hidden_states=self.context, added_cond_kwargs=self.added).sample
        return output[:1], output[1:]

    def flow_velocity(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """d x / d s for the flow latent x = (1 - s) x0 + s noise: noise - x0, guided."""
        sigma = s / (1 - s)  # x / (1 - s) = x0 + sigma noise is the k-diffusion latent
        root_a, root_1ma = 1 / (1 + sigma**2).sqrt(), sigma / (1 + sigma**2).sqrt()  # sqrt(a_t), sqrt(1 - a_t)
        vp_image = x / (1 - s) / (1 + sigma**2).sqrt()  # sqrt(a_t) x0 + sqrt(1 - a_t) noise
        velocities = []
        for output in self.predict(vp_image, nearest_timestep(float(s.double() / (1 - s.double())))):
            if self.variant.prediction == "eps":  # output = noise
                noise, x0 = output, (vp_image - root_1ma * output) / root_a
            else:  # output = v = sqrt(a_t) noise - sqrt(1 - a_t) x0
                noise, x0 = root_1ma * vp_image + root_a * output, root_a * vp_image - root_1ma * output
            velocities.append(noise - x0)
        positive, negative = velocities
        return negative + CFG * (positive - negative)

    def denoised(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """k-diffusion's x0 prediction for x = x0 + sigma noise, guided (ComfyUI's EPS / V_PREDICTION)."""
        vp_image = x / (sigma**2 + 1).sqrt()
        outputs = []
        for output in self.predict(vp_image, nearest_timestep(float(sigma))):
            if self.variant.prediction == "eps":
                outputs.append(x - sigma * output)
            else:
                outputs.append(x / (sigma**2 + 1) - output * sigma / (sigma**2 + 1).sqrt())
        positive, negative = outputs
        return negative + CFG * (positive - negative)


def flow_loop(model: PlainUNet, sampler: str, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Sample in flow time from ComfyUI's full-denoise start (an empty latent is x0 = 0): the noise scaled to a
    unit-variance VP image, sqrt(1 + sigma^2) noise in k-diffusion terms, divided by 1 + sigma in flow time."""
    v = model.flow_velocity
    sigma = sigmas[0].double() / (1 - sigmas[0].double())
    x = ((1 + sigma**2).sqrt() / (1 + sigma)).float() * noise
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        h = s_next - s
        slope = v(x, s)
        if sampler == "euler" or (sampler == "heun" and s_next == 0):
            x = x + h * slope
        elif sampler == "heun":  # Karras et al. 2022, Algorithm 1: trapezoid over an Euler predictor
            x = x + h / 2 * (slope + v(x + h * slope, s_next))
        else:  # RF-Solver-2 (Wang et al. 2024): x + h v + h^2 / 2 dv/ds, dv/ds from half a step
            derivative = (v(x + h / 2 * slope, s + h / 2) - slope) / (h / 2)
            x = x + h * slope + h**2 / 2 * derivative
    return x


def k_diffusion_euler(model: PlainUNet, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Euler on x = x0 + sigma noise (Karras et al. 2022): d = (x - denoised) / sigma, from ComfyUI's full-denoise
    start sqrt(1 + sigma^2) noise."""
    x = (1 + sigmas[0] ** 2).sqrt() * noise
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        slope = (x - model.denoised(x, sigma)) / sigma
        x = x + slope * (sigma_next - sigma)
    return x


def initial_noise(shape: tuple[int, ...]) -> torch.Tensor:
    """ComfyUI's prepare_noise: one float32 randn on a CPU generator seeded with the seed."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(SEED), dtype=torch.float32)


# ---- the proof ----------------------------------------------------------------------------------------------

def run(pipeline: Pipeline, variant: Variant, route: str, sampler: str) -> torch.Tensor:
    outcome = pipeline.run(graph(variant, route, sampler))
    samples = outcome.value("sample")["samples"]
    assert samples.shape == (1, 4, HEIGHT // 8, WIDTH // 8) and torch.isfinite(samples).all()
    return samples


def assert_matches(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal to 1e-5 of the output's scale (absolutely, for outputs within +-1). A random eps model's samples
    reach about 50 (x0 = x - sigma eps, with an eps that has nothing to do with the noise), where float32 itself
    resolves only 4e-6 per operation, and the loop's arithmetic and Flowmill's round differently."""
    scale = max(1.0, float(expected.abs().max()))
    error = float((got - expected).abs().max())
    assert error <= 1e-5 * scale, f"largest difference {error:.3g} exceeds 1e-5 x {scale:.3g}"


def plain_model(modules: dict[str, Any], variant: Variant) -> PlainUNet:
    return PlainUNet(modules["sdxl" if variant.sdxl else "sd1"], variant, torch.zeros(1, 4, HEIGHT // 8, WIDTH // 8))


@pytest.mark.parametrize("sampler", ["euler", "heun", "rf_solver"])
@pytest.mark.parametrize("route", ["ksampler", "custom"])
@pytest.mark.parametrize("variant", VARIANTS, ids=[variant.name for variant in VARIANTS])
def test_sampling_matches_a_plain_loop_over_the_diffusers_module(
        pipeline: Pipeline, modules: dict[str, Any], variant: Variant, route: str, sampler: str) -> None:
    got = run(pipeline, variant, route, sampler)
    # The flow times under test elsewhere (tests/unit/sampling/test_vp_schedules.py).
    schedule = DiscreteVP.scaled_linear(variant.prediction)  # type: ignore[arg-type]
    sigmas = compute_sigmas(schedule, variant.scheduler, STEPS)
    with torch.no_grad():
        expected = flow_loop(plain_model(modules, variant), sampler, initial_noise(tuple(got.shape)), sigmas)
    assert_matches(got, expected)


@pytest.mark.parametrize("variant", VARIANTS, ids=[variant.name for variant in VARIANTS])
def test_euler_matches_k_diffusion_without_any_flow_conversion(
        pipeline: Pipeline, modules: dict[str, Any], variant: Variant) -> None:
    got = run(pipeline, variant, "ksampler", "euler")
    schedule = DiscreteVP.scaled_linear(variant.prediction)  # type: ignore[arg-type]
    sigmas = get_scheduler(variant.scheduler)(schedule, STEPS)
    with torch.no_grad():
        expected = k_diffusion_euler(plain_model(modules, variant), initial_noise(tuple(got.shape)), sigmas)
    assert_matches(got, expected)


def test_v_prediction_from_the_folder_and_from_the_node_agree_and_differ_from_eps(pipeline: Pipeline) -> None:
    folder, by_node, eps = (run(pipeline, variant, "ksampler", "heun") for variant in (
        Variant("v", "tiny-unet-v", "v"), Variant("n", "tiny-unet.safetensors", "v", sampling_node=True),
        Variant("e", "tiny-unet.safetensors", "eps")))
    assert torch.equal(folder, by_node)
    assert not torch.allclose(folder, eps, atol=1e-2)


def test_model_sampling_discrete_sets_zero_terminal_snr(pipeline: Pipeline) -> None:
    prompt = graph(Variant("z", "tiny-unet.safetensors", "v", sampling_node=True), "custom", "euler")
    prompt["discrete"]["inputs"]["zsnr"] = True
    prompt["keep"]["inputs"]["value"] = ["sigmas", 0]
    sigmas = pipeline.run(prompt, partial=["keep"]).value("sigmas")
    flow = float(sigmas[0])
    assert 0.9997 < flow < 1.0 and flow / (1 - flow) == pytest.approx(4518.9, rel=2e-3)  # sigma_max near 4519


SETTINGS = {"ModelSamplingSD3": {"shift": 3.0},
            "ModelSamplingFlux": {"max_shift": 1.15, "base_shift": 0.5, "width": 1024, "height": 1024},
            "ModelSamplingDiscrete": {"sampling": "v_prediction", "zsnr": False}}


@pytest.mark.parametrize(("class_type", "unet_name", "message"), [
    ("ModelSamplingSD3", "tiny-unet.safetensors", "model is a 'unet' model, a discrete VP (eps / v prediction) model"),
    ("ModelSamplingFlux", "tiny-unet-v", "model is a 'unet' model, a discrete VP (eps / v prediction) model"),
    ("ModelSamplingDiscrete", "tiny-flux.safetensors", "model is a 'flux' model, a flow model"),
])
def test_model_sampling_nodes_refuse_the_other_kind_of_model(pipeline: Pipeline, class_type: str, unet_name: str,
                                                             message: str) -> None:
    prompt = {
        "loader": {"class_type": "UNETLoader", "inputs": {"unet_name": unet_name, "weight_dtype": "default"}},
        "patch": {"class_type": class_type, "inputs": {"model": ["loader", 0], **SETTINGS[class_type]}},
        "keep": {"class_type": "TestKeep", "inputs": {"value": ["patch", 0]}},
    }
    failure = pipeline.run(prompt, expect="error").result.failure
    assert failure is not None and failure.node_id == "patch"
    assert f"{class_type}: {message}" in failure.exception_message


def test_model_sampling_discrete_is_declared_as_comfyui_declares_it(pipeline: Pipeline) -> None:
    info = pipeline.registry.object_info()["ModelSamplingDiscrete"]
    assert info["category"] == "advanced/model" and info["output"] == ["MODEL"]
    required = info["input"]["required"]
    assert list(required) == ["model", "sampling", "zsnr"] and required["model"] == ["MODEL"]
    assert required["sampling"][0] == ["eps", "v_prediction"]  # the modes DiscreteVP implements
    assert required["zsnr"][0] == "BOOLEAN" and required["zsnr"][1]["default"] is False
