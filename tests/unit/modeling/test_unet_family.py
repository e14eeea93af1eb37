"""The `unet` family (diffusers' UNet2DConditionModel: SD1.x, SD2.x, SDXL): detection from a file's header,
the config from shapes, the conditioning it reads, and its velocity against the module called by hand."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
import torch

from modeling.architectures import unet
from modeling.conditioning import CrossAttentionConditioning, SDXLConditioning, unpack_conditioning
from modeling.detect import UnknownCheckpointError, detect_family
from modeling.diffusion_model import DiffusionModel
from modeling.errors import ModelFileError
from modeling.families import FAMILIES
from modeling.loading import load_diffusion_model
from sampling.discrete_vp import DiscreteVP
from tests.fixtures.tiny_unets import (
    SDXL_POOLED_WIDTH,
    build_unet,
    sd1_config,
    sdxl_config,
    write_file,
    write_pipeline_folder,
)

# What weight shapes can tell; everything else is a file setting.
SHAPE_KEYS = ("in_channels", "out_channels", "block_out_channels", "layers_per_block", "down_block_types",
              "up_block_types", "mid_block_type", "cross_attention_dim", "transformer_layers_per_block",
              "use_linear_projection", "conv_in_kernel", "conv_out_kernel", "addition_embed_type",
              "projection_class_embeddings_input_dim")

# The released config.json values (diffusers' unet/config.json of each repository) that shapes decide, plus
# the attention heads, whose defaults the family picks from the shapes.
SD15 = {"block_out_channels": (320, 640, 1280, 1280), "cross_attention_dim": 768, "attention_head_dim": 8,
        "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, "layers_per_block": 2,
        "in_channels": 4, "out_channels": 4, "sample_size": 64}
SD21 = {**SD15, "cross_attention_dim": 1024, "attention_head_dim": (5, 10, 20, 20), "use_linear_projection": True,
        "sample_size": 96}
SDXL = {"block_out_channels": (320, 640, 1280), "cross_attention_dim": 2048, "attention_head_dim": (5, 10, 20),
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), "layers_per_block": 2,
        "transformer_layers_per_block": (1, 2, 10), "use_linear_projection": True,
        "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
        "projection_class_embeddings_input_dim": 2816, "mid_block_type": "UNetMidBlock2DCrossAttn",
        "in_channels": 4, "out_channels": 4, "sample_size": 128}


def header_state(path: Path) -> dict[str, torch.Tensor]:
    """The file's tensors as shapes only, read from the safetensors header (8-byte length, then JSON)."""
    with path.open("rb") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(length))
    return {key: torch.empty(entry["shape"], device="meta") for key, entry in header.items() if key != "__metadata__"}


def meta_state(config: dict[str, Any]) -> tuple[dict[str, torch.Tensor], Any]:
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        module = UNet2DConditionModel(**config)
    return dict(module.state_dict()), module.config


def plain(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def shape_keys(config: Any) -> dict[str, Any]:
    """The settings shapes decide (None: not set, diffusers' default)."""
    return {key: plain(config.get(key)) for key in SHAPE_KEYS}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("unets")
    sd1, sdxl = build_unet(sd1_config()), build_unet(sdxl_config(), seed=4)
    return {
        "sd1": write_file(root / "sd1.safetensors", sd1), "sd1_module": sd1,
        "sdxl": write_file(root / "sdxl.safetensors", sdxl, sdxl_config()), "sdxl_module": sdxl,
        "v": write_pipeline_folder(root / "sd1-v", sd1, sd1_config(), "v_prediction"),
        "root": root,
    }


@pytest.mark.parametrize("name", ["sd1", "sdxl"])
def test_tiny_unets_are_detected_from_the_header_and_their_shapes_give_the_built_config(
        files: dict[str, Any], name: str) -> None:
    state = header_state(files[name])
    assert detect_family(state, "diffusion_model").name == "unet"
    assert detect_family(state).name == "unet"  # against every family, VAEs and text encoders included
    inferred = unet.infer_config(state)
    built = files[f"{name}_module"].config
    assert shape_keys(inferred) == shape_keys(built)
    with pytest.raises(UnknownCheckpointError):
        detect_family(state, "vae")


def test_the_sd1_default_heads_need_no_config_and_sdxl_settings_come_from_the_file(files: dict[str, Any]) -> None:
    sd1 = load_diffusion_model(files["sd1"], device="cpu")
    assert sd1.module.config.attention_head_dim == 8 and sd1.sampling.prediction == "eps"
    sdxl = load_diffusion_model(files["sdxl"], device="cpu")
    assert plain(sdxl.module.config.attention_head_dim) == (2, 4)
    assert sdxl.module.config.addition_time_embed_dim == 8
    assert isinstance(sdxl.sampling, DiscreteVP) and sdxl.family.latent_ndim == 4 and sdxl.latent_channels == 4


def test_sdxl_without_its_settings_is_refused_with_a_hint(files: dict[str, Any], tmp_path: Path) -> None:
    bare = write_file(tmp_path / "bare.safetensors", files["sdxl_module"])  # no metadata config
    with pytest.raises(ModelFileError, match=r"too few for 6 size ids of addition_time_embed_dim 256.*config\.json"):
        load_diffusion_model(bare, device="cpu")


@pytest.mark.parametrize(("config", "parameters"), [(SD15, 859_520_964), (SD21, 865_910_724), (SDXL, 2_567_463_684)],
                         ids=["sd1.5", "sd2.1", "sdxl"])
def test_real_size_unets_are_detected_and_configured_from_shapes_alone(config: dict[str, Any], parameters: int) -> None:
    state, built = meta_state(config)
    assert sum(value.numel() for value in state.values()) == parameters  # the published sizes
    assert detect_family(state).name == "unet"
    inferred = unet.infer_config(state)
    assert shape_keys(inferred) == shape_keys(built)
    # What shapes cannot show: the released heads are the defaults the shapes select.
    assert plain(inferred["attention_head_dim"]) == plain(config["attention_head_dim"])
    if "addition_time_embed_dim" in config:
        assert inferred["addition_time_embed_dim"] == config["addition_time_embed_dim"]


def test_vaes_and_flux_transformers_are_not_unets(files: dict[str, Any]) -> None:
    from diffusers import AutoencoderKL

    with torch.device("meta"):
        vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), latent_channels=4,
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                            layers_per_block=2)
    assert detect_family(dict(vae.state_dict())).name == "autoencoder_kl"
    unet_state = header_state(files["sd1"])
    for other in ("flux", "flux_bfl", "autoencoder_kl", "clip_text"):
        assert FAMILIES[other].missing_patterns(list(FAMILIES[other].canonical(unet_state)))
    # Class-conditioned UNets (the x4 upscaler) are another architecture.
    upscaler = {**unet_state, "class_embedding.weight": torch.empty(1000, 128, device="meta")}
    with pytest.raises(UnknownCheckpointError, match="class_embedding"):
        detect_family(upscaler, "diffusion_model")


def test_a_scheduler_config_with_v_prediction_selects_v(files: dict[str, Any], tmp_path: Path) -> None:
    model = load_diffusion_model(files["v"], device="cpu")
    assert model.sampling.prediction == "v"
    torch.testing.assert_close(model.sampling.alphas_cumprod, DiscreteVP.scaled_linear().alphas_cumprod)
    bad = write_pipeline_folder(tmp_path / "bad", files["sd1_module"], sd1_config(), "sample")
    with pytest.raises(ModelFileError, match=r"prediction_type 'sample' is not supported.*epsilon, v_prediction"):
        load_diffusion_model(bad, device="cpu")


def _vp_velocity_by_hand(module: Any, x: torch.Tensor, s: torch.Tensor, prediction: str, **call: Any) -> torch.Tensor:
    """The flow velocity from the VP definitions: the model reads x_t = sqrt(a) x0 + sqrt(1 - a) noise at the
    table timestep nearest in log sigma; its eps or v gives x0 and the noise; velocity = noise - x0."""
    alphas_cumprod = torch.cumprod(1 - torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2, 0)
    table = ((1 - alphas_cumprod) / alphas_cumprod).sqrt().float().double()
    sigma = (s.double() / (1 - s.double()))
    timestep = (table.log().reshape(1, -1) - sigma.log().reshape(-1, 1)).abs().argmin(dim=1)
    flow = s.reshape(-1, 1, 1, 1)
    view = flow / (1 - flow)  # k-diffusion sigma: x / (1 - s) = x0 + sigma noise, and sqrt(a) = 1 / sqrt(1 + sigma^2)
    root_a, root_1ma = 1 / (1 + view**2).sqrt(), view / (1 + view**2).sqrt()
    x_t = x / (1 - flow) / (1 + view**2).sqrt()
    output = module(x_t, timestep.float(), **call).sample
    if prediction == "eps":
        noise = output
        x0 = (x_t - root_1ma * noise) / root_a
    else:
        x0 = root_a * x_t - root_1ma * output
        noise = root_1ma * x_t + root_a * output
    return noise - x0


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_velocity_is_the_vp_conversion_of_the_module_called_by_hand(files: dict[str, Any], prediction: str) -> None:
    model = load_diffusion_model(files["sd1"] if prediction == "eps" else files["v"], device="cpu")
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=generator)
    context = torch.randn(1, 7, 16, generator=generator)
    s = torch.tensor([0.93, 0.41])
    (condition,) = unpack_conditioning("test", "positive", [[context, {}]], model)
    assert isinstance(condition, CrossAttentionConditioning)
    got = model.velocity(x, s, condition)
    expected = _vp_velocity_by_hand(files["sd1_module"], x, s, prediction,
                                    encoder_hidden_states=context.expand(2, -1, -1))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_sdxl_reads_pooled_text_and_size_ids_with_comfyui_defaults(files: dict[str, Any]) -> None:
    model = load_diffusion_model(files["sdxl"], device="cpu")
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 8, 6, generator=generator)
    context = torch.randn(1, 5, 32, generator=generator)
    pooled = torch.randn(1, SDXL_POOLED_WIDTH, generator=generator)
    given = {"pooled_output": pooled, "width": 1024, "height": 768, "crop_w": 16, "crop_h": 8,
             "target_width": 512, "target_height": 640}
    absent = {"pooled_output": pooled}
    (explicit, defaulted) = unpack_conditioning("test", "positive", [[context, given], [context, absent]], model)
    assert isinstance(explicit, SDXLConditioning)
    assert explicit.time_ids.tolist() == [[768, 1024, 8, 16, 640, 512]]
    s = torch.tensor([0.6])
    for condition, ids in ((explicit, [[768, 1024, 8, 16, 640, 512]]),
                           # ComfyUI: a missing size is the latent's in pixels (8 per cell), a missing target the size
                           (defaulted, [[64, 48, 0, 0, 64, 48]])):
        expected = _vp_velocity_by_hand(files["sdxl_module"], x, s, "eps", encoder_hidden_states=context,
                                        added_cond_kwargs={"text_embeds": pooled, "time_ids": torch.tensor(ids)})
        torch.testing.assert_close(model.velocity(x, s, condition), expected, atol=1e-5, rtol=1e-5)


def test_conditioning_that_does_not_fit_the_unet_is_refused(files: dict[str, Any]) -> None:
    sd1 = load_diffusion_model(files["sd1"], device="cpu")
    sdxl = load_diffusion_model(files["sdxl"], device="cpu")
    with pytest.raises(ValueError, match=r"KSampler: positive\[0\]: the text sequence is 32 wide but the model "
                                         r"expects 16 \(cross_attention_dim"):
        unpack_conditioning("KSampler", "positive", [[torch.ones(1, 4, 32), {}]], sd1)
    with pytest.raises(ValueError, match=r"positive\[0\]: its pooled_output must have shape \[1, \.\.\.\].*got none"):
        unpack_conditioning("KSampler", "positive", [[torch.ones(1, 4, 32), {}]], sdxl)
    with pytest.raises(ValueError, match=r"the pooled_output is 12 wide but the model expects 24"):
        unpack_conditioning("KSampler", "positive", [[torch.ones(1, 4, 32), {"pooled_output": torch.ones(1, 12)}]],
                            sdxl)
    with pytest.raises(ValueError, match=r"its crop_w must be a whole number of pixels >= 0.*got 2.5"):
        unpack_conditioning("KSampler", "positive",
                            [[torch.ones(1, 4, 32), {"pooled_output": torch.ones(1, 24), "crop_w": 2.5}]], sdxl)


def test_a_bfloat16_unet_reads_whole_float32_timesteps(files: dict[str, Any]) -> None:
    """bfloat16 holds 999 as 1000: the timestep must reach the UNet's sinusoidal embedding as float32."""
    loaded = load_diffusion_model(files["sd1"], device="cpu")
    module = build_unet(sd1_config()).to(torch.bfloat16)
    model = DiffusionModel(module, loaded.family, loaded.sampling, 4, torch.device("cpu"), torch.bfloat16)
    seen: list[torch.Tensor] = []
    module.time_proj.register_forward_hook(lambda _module, inputs, _output: seen.append(inputs[0]))
    top = float(model.sampling.to_flow(torch.tensor([model.sampling.sigma_max], dtype=torch.float64)))
    model.velocity(torch.randn(1, 4, 8, 8), torch.tensor([top]), CrossAttentionConditioning(torch.ones(1, 3, 16)))
    assert seen[0].dtype == torch.float32 and seen[0].tolist() == [999.0]
