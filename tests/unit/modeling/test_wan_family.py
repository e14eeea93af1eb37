"""The Wan family row: detection from the header, config from shapes, the velocity call, conditioning errors."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate import init_empty_weights
from torch import nn

from modeling.architectures import wan
from modeling.conditioning import WanConditioning, unpack_conditioning
from modeling.detect import UnknownCheckpointError, detect_family
from modeling.diffusion_model import DiffusionModel
from modeling.errors import ModelFileError
from modeling.families import FAMILIES
from modeling.latent_preview import LatentPreview
from modeling.loading import check_component, load_diffusion_model
from modeling.previews import preview_image
from sampling.flow import FlowSampling
from tests.fixtures import tiny_models
from tests.fixtures.tiny_wan import IMAGE_DIM, TEXT_DIM, build_wan, image_wan_config, wan_config, write_wan

# Tiny models on a shared machine: one thread is many times faster than contended ones.
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Wan 2.1 / 2.2 as released (Wan-Video configs, diffusers' convert_wan_to_diffusers.py), with the key
# and parameter counts of the native files (model-formats.md §4.1): the rows' config must come from
# the shapes alone at real size too.
REAL_SIZES = {
    "2.1 T2V-1.3B": ({"num_attention_heads": 12, "ffn_dim": 8960, "num_layers": 30}, 825, 1_418_996_800),
    "2.1 T2V-14B": ({"num_attention_heads": 40, "ffn_dim": 13824, "num_layers": 40}, 1095, 14_288_491_584),
    "2.1 I2V-14B": ({"num_attention_heads": 40, "ffn_dim": 13824, "num_layers": 40, "in_channels": 36,
                     "image_dim": 1280, "added_kv_proj_dim": 5120}, 1303, 16_394_878_784),
    "2.2 TI2V-5B": ({"num_attention_heads": 24, "ffn_dim": 14336, "num_layers": 30, "in_channels": 48,
                     "out_channels": 48}, 825, 4_999_787_712),
}


@pytest.fixture(scope="module")
def module() -> nn.Module:
    return build_wan()


@pytest.fixture(scope="module")
def image_module() -> nn.Module:
    return build_wan(seed=1, **image_wan_config())


@pytest.fixture(scope="module")
def model_file(module: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_wan(tmp_path_factory.mktemp("wan") / "tiny-wan.safetensors", module)


@pytest.fixture(scope="module")
def model(model_file: Path) -> DiffusionModel:
    return load_diffusion_model(model_file, device="cpu")


@pytest.fixture(scope="module")
def image_model(image_module: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> DiffusionModel:
    return load_diffusion_model(write_wan(tmp_path_factory.mktemp("wan-i2v") / "tiny.safetensors", image_module),
                                device="cpu")


def _inferred_part(config: dict, built: nn.Module) -> dict:
    return {key: built.config[key] for key in config}


def _padded(context: torch.Tensor) -> torch.Tensor:
    """Wan's text context: zero rows up to umT5's 512 tokens (Wan's forward, WanPipeline, ComfyUI all pad)."""
    return torch.cat([context, context.new_zeros(context.shape[0], 512 - context.shape[1], context.shape[2])], dim=1)


def test_the_header_alone_says_wan(model_file: Path, module: nn.Module) -> None:
    family = check_component(model_file, "diffusion_model")  # reads the header and shapes, no weights
    assert family.name == "wan" and family.latent_ndim == 5
    state = module.state_dict()
    assert detect_family(state).name == "wan"  # among every component's rows, not only diffusion models
    assert family.sampling == FlowSampling.sd3(5.0)


def test_other_families_files_are_not_taken_for_wan() -> None:
    modules = tiny_models.build_all()
    for built, component, name in ((modules.flux, "diffusion_model", "flux"), (modules.vae, "vae", "autoencoder_kl"),
                                   (modules.clip, "text_encoder", "clip_text")):
        assert detect_family(built.state_dict()).name == name
        assert FAMILIES["wan"].missing_patterns(list(built.state_dict())), component


def test_wan_derivatives_with_extra_parts_are_refused(module: nn.Module) -> None:
    for extra in ("vace_blocks.0.proj_out.weight", "motion_encoder.conv_in.weight", "fps_embedding.weight"):
        state = dict(module.state_dict()) | {extra: torch.zeros(1)}
        with pytest.raises(UnknownCheckpointError, match=r"wan \(diffusion_model\): 10 of 10 key patterns found, "
                                                          r"has '(vace_\*|motion_encoder\.\*|fps_embedding\.\*)'"):
            detect_family(state, "diffusion_model")


def test_config_from_shapes_is_the_built_config(module: nn.Module, image_module: nn.Module,
                                                model: DiffusionModel) -> None:
    for built in (module, image_module):
        config = wan.infer_config(built.state_dict())
        assert config == _inferred_part(config, built)
    assert wan.infer_config(image_module.state_dict())["image_dim"] == IMAGE_DIM
    assert dict(model.module.config) | {"_use_default_values": None} == dict(module.config) | {
        "_use_default_values": None}
    assert model.latent_channels == 16 and model.latent_shape == "[B, 16, T, H, W]"


@pytest.mark.parametrize("name", list(REAL_SIZES))
def test_real_sizes_are_read_from_shapes_alone(name: str) -> None:
    overrides, keys, parameters = REAL_SIZES[name]
    from diffusers import WanTransformer3DModel

    with init_empty_weights():  # the real key list and shapes, no memory
        built = WanTransformer3DModel(**overrides)
    state = built.state_dict()
    assert len(state) == keys and sum(value.numel() for value in state.values()) == parameters
    assert next(iter(state.values())).device == torch.device("meta")
    family = detect_family(state, "diffusion_model")
    assert family.name == "wan"
    config = family.infer_config(state)
    assert config == _inferred_part(config, built)
    assert config["attention_head_dim"] == 128 and config["text_dim"] == 4096
    assert family.latent_channels(config) == overrides.get("out_channels", 16)


def test_image_to_video_models_needing_the_concat_latent_are_refused_clearly() -> None:
    overrides, _, _ = REAL_SIZES["2.1 I2V-14B"]
    config = SimpleNamespace(**(wan_config(text_dim=4096) | overrides))
    with pytest.raises(ValueError, match=r"image-to-video: its transformer reads 36 channels \(16 latent \+ 20 of "
                                         r"mask and reference-image latent from WanImageToVideo"):
        wan.conditioning(torch.zeros(1, 512, 4096), {"clip_vision_output": torch.zeros(1, 257, 1280)}, config)


def test_velocity_equals_calling_the_diffusers_module_by_hand(model: DiffusionModel, module: nn.Module) -> None:
    """By hand on the module the wrapper holds (to 1e-6), and on the module the file was written from (to 1e-5:
    the same weights, read back from the file, may take other kernel paths in the last bits)."""
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2, 16, 3, 6, 8, generator=generator)
    sigma = torch.rand(2, generator=generator)
    context = torch.randn(2, 7, TEXT_DIM, generator=generator)
    (condition,) = unpack_conditioning("KSampler", "positive", [[context, {}]], model)
    assert isinstance(condition, WanConditioning) and condition.context.shape == (2, 512, TEXT_DIM)
    velocity = model.velocity(x, sigma, condition)
    with torch.no_grad():
        expected = model.module(hidden_states=x, timestep=sigma * 1000, encoder_hidden_states=_padded(context),
                                return_dict=False)[0]
        written = module(hidden_states=x, timestep=sigma * 1000, encoder_hidden_states=_padded(context),
                         return_dict=False)[0]
    assert velocity.shape == x.shape
    assert torch.allclose(velocity, expected, atol=1e-6, rtol=0)
    assert torch.allclose(velocity, written, atol=1e-5, rtol=0)


def test_odd_sizes_are_padded_by_the_edge_and_cropped(model: DiffusionModel) -> None:
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(1, 16, 2, 5, 7, generator=generator)
    context = torch.randn(1, 512, TEXT_DIM, generator=generator)
    velocity = model.velocity(x, torch.tensor(0.6), WanConditioning(context))
    padded = torch.cat([x, x[:, :, :, -1:]], dim=3)
    padded = torch.cat([padded, padded[..., -1:]], dim=4)
    with torch.no_grad():
        expected = model.module(hidden_states=padded, timestep=torch.tensor([600.0]), encoder_hidden_states=context,
                                return_dict=False)[0]
    assert velocity.shape == x.shape
    assert torch.allclose(velocity, expected[:, :, :, :5, :7], atol=1e-6, rtol=0)


def test_the_image_branch_reads_the_clip_vision_tokens(image_model: DiffusionModel, image_module: nn.Module) -> None:
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(1, 16, 2, 4, 4, generator=generator)
    context = torch.randn(1, 9, TEXT_DIM, generator=generator)
    tokens = torch.randn(1, 257, IMAGE_DIM, generator=generator)
    as_output = SimpleNamespace(penultimate_hidden_states=tokens)  # CLIPVisionEncode's output object
    (from_object,) = unpack_conditioning("KSampler", "positive", [[context, {"clip_vision_output": as_output}]],
                                         image_model)
    (from_tensor,) = unpack_conditioning("KSampler", "positive", [[context, {"clip_vision_output": tokens}]],
                                         image_model)
    assert torch.equal(from_object.image_embedding, from_tensor.image_embedding)
    velocity = image_model.velocity(x, torch.tensor(0.3), from_object)
    with torch.no_grad():
        # diffusers' I2V attention takes everything before the last 512 context tokens as image tokens.
        expected = image_model.module(hidden_states=x, timestep=torch.tensor([300.0]),
                                      encoder_hidden_states=_padded(context), encoder_hidden_states_image=tokens,
                                      return_dict=False)[0]
        written = image_module(hidden_states=x, timestep=torch.tensor([300.0]), encoder_hidden_states=_padded(context),
                               encoder_hidden_states_image=tokens, return_dict=False)[0]
    assert torch.allclose(velocity, expected, atol=1e-6, rtol=0)
    assert torch.allclose(velocity, written, atol=1e-5, rtol=0)
    without_image = image_module(hidden_states=x, timestep=torch.tensor([300.0]),
                                 encoder_hidden_states=_padded(context), return_dict=False)[0]
    assert not torch.allclose(velocity, without_image, atol=1e-3)


def test_wrong_conditioning_is_refused_where_it_enters(model: DiffusionModel, image_model: DiffusionModel) -> None:
    with pytest.raises(ValueError, match=r"KSampler: positive\[0\]: the text sequence is 64 wide but the model "
                                         r"expects 32 \(text_dim"):
        unpack_conditioning("KSampler", "positive", [[torch.zeros(1, 7, 64), {}]], model)
    with pytest.raises(ValueError, match=r"negative\[0\]: this Wan model has an image branch and needs a CLIP-vision "
                                         r"embedding: extras 'clip_vision_output'"):
        unpack_conditioning("KSampler", "negative", [[torch.zeros(1, 7, TEXT_DIM), {}]], image_model)
    with pytest.raises(ValueError, match=r"the clip_vision_output is 1280 wide but the model expects 24 \(image_dim"):
        unpack_conditioning("KSampler", "positive", [[torch.zeros(1, 7, TEXT_DIM),
                                                      {"clip_vision_output": torch.zeros(1, 257, 1280)}]], image_model)
    with pytest.raises(ValueError, match=r"clip_vision_output must be CLIP-vision tokens \[1, 257, 24\].*got "
                                         r"a SimpleNamespace without penultimate_hidden_states"):
        unpack_conditioning("KSampler", "positive", [[torch.zeros(1, 7, TEXT_DIM),
                                                      {"clip_vision_output": SimpleNamespace()}]], image_model)
    with pytest.raises(ValueError, match=r"600 tokens; an image-to-video Wan model takes at most 512"):
        unpack_conditioning("KSampler", "positive", [[torch.zeros(1, 600, TEXT_DIM),
                                                      {"clip_vision_output": torch.zeros(1, 257, IMAGE_DIM)}]],
                            image_model)
    # A text-to-video model ignores an image embedding, as Wan's T2V forward does, and keeps long prompts.
    (condition,) = unpack_conditioning("KSampler", "positive", [[torch.zeros(1, 600, TEXT_DIM),
                                                                {"clip_vision_output": torch.zeros(1, 257, 1280)}]],
                                       model)
    assert condition.image_embedding is None and condition.context.shape == (1, 600, TEXT_DIM)


def test_a_latent_of_the_wrong_rank_says_what_it_needs(model: DiffusionModel) -> None:
    condition = WanConditioning(torch.zeros(1, 512, TEXT_DIM))
    with pytest.raises(ValueError, match=r"takes 16-channel latents \[B, 16, T, H, W\], got shape \(1, 16, 4, 4\)"):
        model.velocity(torch.zeros(1, 16, 4, 4), torch.tensor(0.5), condition)
    with pytest.raises(ValueError, match=r"takes 16-channel latents \[B, 16, T, H, W\], got shape \(1, 48, 1, 4, 4\)"):
        model.velocity(torch.zeros(1, 48, 1, 4, 4), torch.tensor(0.5), condition)


def test_a_head_split_the_shapes_cannot_show_comes_from_the_config(tmp_path: Path) -> None:
    # Hidden size 64 is no multiple of 128: two heads of 32 only a config can tell.
    built = build_wan(seed=2, num_attention_heads=2, attention_head_dim=32)
    bare = write_wan(tmp_path / "bare" / "wan.safetensors", built)
    with pytest.raises(ModelFileError, match=r"cannot tell how many attention heads.*put num_attention_heads and "
                                             r"attention_head_dim in a config.json"):
        check_component(bare, "diffusion_model")
    settings = {"num_attention_heads": 2, "attention_head_dim": 32, "in_channels": 16}
    described = write_wan(tmp_path / "described" / "wan.safetensors", built, {"config": json.dumps(settings)})
    loaded = load_diffusion_model(described, device="cpu")
    assert loaded.module.config.num_attention_heads == 2
    x, context = torch.randn(1, 16, 2, 4, 4), torch.randn(1, 512, TEXT_DIM)
    with torch.no_grad():
        expected = built(hidden_states=x, timestep=torch.tensor([250.0]), encoder_hidden_states=context,
                         return_dict=False)[0]
    assert torch.allclose(loaded.velocity(x, torch.tensor(0.25), WanConditioning(context)), expected, atol=1e-5)
    wrong = write_wan(tmp_path / "wrong" / "wan.safetensors", built,
                      {"config": json.dumps(settings | {"in_channels": 36})})
    with pytest.raises(ModelFileError, match=r"says in_channels = 36 but the weights .* have 16"):
        check_component(wrong, "diffusion_model")


def test_a_video_preview_shows_the_first_frame() -> None:
    projection = LatentPreview.generic(16)
    video = torch.randn(2, 16, 3, 6, 8, generator=torch.Generator().manual_seed(6))
    frame = preview_image(projection, video)
    assert frame.size == (64, 48)
    assert frame.tobytes() == preview_image(projection, video[:, :, 0]).tobytes()
    assert frame.tobytes() != preview_image(projection, video[:, :, 1]).tobytes()


def test_in_bfloat16_the_rotary_tables_stay_float32_as_diffusers_keeps_them(module: nn.Module,
                                                                           model_file: Path) -> None:
    model = load_diffusion_model(model_file, device="cpu", dtype=torch.bfloat16)
    assert model.module.rope.freqs_cos.dtype == torch.float32
    assert model.module.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
