"""FLUX transformers in BFL's original layout: detection, config from shapes, conversion to diffusers.

Three independent checks of the conversion table (modeling/architectures/flux_bfl.py):
- at real size, on the meta device: FLUX dev's and schnell's BFL key lists, written here from the
  published layout (model-formats.md 1.2), convert to exactly the keys and shapes of diffusers'
  FluxTransformer2DModel built with the published diffusers configs;
- values: the installed diffusers' own `convert_flux_transformer_checkpoint_to_diffusers` gives the
  same tensors. It hard-codes a hidden size of 3072, so the test feeds it the full dev/schnell layout
  at H=3072 with narrow columns (both converters only split and reorder rows), which costs a few MB;
- numbers: a tiny random diffusers FLUX, written as a BFL file, loads and computes bit-identically.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from modeling.conditioning import FluxConditioning
from modeling.architectures import flux, flux_bfl
from modeling.detect import UnknownCheckpointError, detect_family
from modeling.errors import ModelFileError
from modeling.families import FAMILIES
from modeling.loading import load_checkpoint, load_diffusion_model
from modeling.storage import UpcastLinear
from tests.fixtures.tiny_models import build_all, build_flux, vae_config, write_tokenizer

# FLUX.1 dev / schnell as published in diffusers' transformer/config.json.
DIFFUSERS_DEV = {
    "in_channels": 64, "num_layers": 19, "num_single_layers": 38, "attention_head_dim": 128,
    "num_attention_heads": 24, "joint_attention_dim": 4096, "pooled_projection_dim": 768,
    "guidance_embeds": True, "axes_dims_rope": (16, 56, 56),
}
DIFFUSERS_SCHNELL = DIFFUSERS_DEV | {"guidance_embeds": False}


def bfl_layout(hidden: int = 3072, head_dim: int = 128, double: int = 19, single: int = 38, *, guidance: bool = True,
               in_channels: int = 64, out_channels: int = 64, context: int = 4096,
               vec: int = 768) -> dict[str, tuple[int, ...]]:
    """BFL's FLUX keys and shapes (model-formats.md 1.2), written out here from the published layout."""
    h = hidden
    shapes: dict[str, tuple[int, ...]] = {}

    def linear(name: str, out: int, into: int) -> None:
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (out, into), (out,)

    linear("img_in", h, in_channels)
    linear("txt_in", h, context)
    linear("time_in.in_layer", h, 256)
    linear("time_in.out_layer", h, h)
    linear("vector_in.in_layer", h, vec)
    linear("vector_in.out_layer", h, h)
    if guidance:
        linear("guidance_in.in_layer", h, 256)
        linear("guidance_in.out_layer", h, h)
    for index in range(double):
        for stream in ("img", "txt"):
            block = f"double_blocks.{index}.{stream}"
            linear(f"{block}_mod.lin", 6 * h, h)
            linear(f"{block}_attn.qkv", 3 * h, h)
            linear(f"{block}_attn.proj", h, h)
            linear(f"{block}_mlp.0", 4 * h, h)
            linear(f"{block}_mlp.2", h, 4 * h)
            shapes[f"{block}_attn.norm.query_norm.scale"] = (head_dim,)
            shapes[f"{block}_attn.norm.key_norm.scale"] = (head_dim,)
    for index in range(single):
        block = f"single_blocks.{index}"
        linear(f"{block}.linear1", 7 * h, h)
        linear(f"{block}.linear2", h, 5 * h)
        linear(f"{block}.modulation.lin", 3 * h, h)
        shapes[f"{block}.norm.query_norm.scale"] = (head_dim,)
        shapes[f"{block}.norm.key_norm.scale"] = (head_dim,)
    linear("final_layer.linear", out_channels, h)
    linear("final_layer.adaLN_modulation.1", 2 * h, h)
    return shapes


def on_meta(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    return {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}


def diffusers_meta_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    from diffusers import FluxTransformer2DModel

    with torch.device("meta"):
        module = FluxTransformer2DModel(**config)
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


@pytest.mark.parametrize(("guidance", "bfl_keys", "diffusers_keys", "config"),
                         [(True, 780, 1160, DIFFUSERS_DEV), (False, 776, 1156, DIFFUSERS_SCHNELL)],
                         ids=["dev", "schnell"])
def test_real_size_layouts_convert_to_exactly_the_diffusers_keys(guidance: bool, bfl_keys: int, diffusers_keys: int,
                                                                 config: dict) -> None:
    state = on_meta(bfl_layout(guidance=guidance))
    assert len(state) == bfl_keys
    if guidance:  # the published FLUX.1-dev parameter count (model-formats.md 1.1)
        assert sum(value.numel() for value in state.values()) == 11_901_408_320
    assert detect_family(state, "diffusion_model").name == "flux_bfl"
    prefixed = {f"model.diffusion_model.{key}": value for key, value in state.items()}
    assert detect_family(prefixed, "diffusion_model").name == "flux_bfl"
    inferred = flux_bfl.infer_config(state)
    assert inferred == config
    converted = {key: tuple(value.shape) for key, value in flux_bfl.to_diffusers(state).items()}
    expected = diffusers_meta_shapes(config)
    assert len(expected) == diffusers_keys
    assert converted == expected
    back = flux_bfl.from_diffusers(flux_bfl.to_diffusers(state))
    assert {key: tuple(value.shape) for key, value in back.items()} == bfl_layout(guidance=guidance)


def narrow(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Random tensors with the layout's row counts and at most 2 columns: the converters split rows only."""
    generator = torch.Generator().manual_seed(seed)
    return {key: torch.randn((shape[0], min(2, shape[1])) if len(shape) == 2 else shape, generator=generator)
            for key, shape in shapes.items()}


@pytest.mark.parametrize("guidance", [True, False], ids=["dev", "schnell"])
def test_values_match_diffusers_own_converter_at_real_size(guidance: bool) -> None:
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    state = narrow(bfl_layout(guidance=guidance), seed=3)
    reference = convert_flux_transformer_checkpoint_to_diffusers(
        {f"model.diffusion_model.{key}": value for key, value in state.items()})
    ours = flux_bfl.to_diffusers(state)
    assert sorted(ours) == sorted(reference)
    different = [key for key in ours if not torch.equal(ours[key], reference[key])]
    assert different == []


def test_fused_projections_become_views_not_copies() -> None:
    state = narrow(bfl_layout(hidden=64, head_dim=16, double=1, single=1), seed=4)
    converted = flux_bfl.to_diffusers(state)
    for source, target in (("double_blocks.0.img_attn.qkv.weight", "transformer_blocks.0.attn.to_k.weight"),
                           ("single_blocks.0.linear1.weight", "single_transformer_blocks.0.proj_mlp.weight"),
                           ("single_blocks.0.linear1.bias", "single_transformer_blocks.0.attn.to_q.bias")):
        assert converted[target].untyped_storage().data_ptr() == state[source].untyped_storage().data_ptr()
    assert converted["x_embedder.weight"] is state["img_in.weight"]


def test_config_is_read_from_shapes_at_any_size() -> None:
    state = on_meta(bfl_layout(hidden=96, head_dim=32, double=2, single=3, guidance=False, in_channels=128,
                               context=40, vec=24))
    config = flux_bfl.infer_config(state)
    assert config == {"in_channels": 128, "num_layers": 2, "num_single_layers": 3, "attention_head_dim": 32,
                      "num_attention_heads": 3, "joint_attention_dim": 40, "pooled_projection_dim": 24,
                      "guidance_embeds": False, "axes_dims_rope": flux.rope_axes(32), "out_channels": 64}
    assert {key: tuple(value.shape) for key, value in flux_bfl.to_diffusers(state).items()} == \
        diffusers_meta_shapes(config)


def test_half_matching_file_says_what_matched_and_what_did_not() -> None:
    shapes = bfl_layout(hidden=64, head_dim=16, double=1, single=1)
    state = on_meta({key: shape for key, shape in shapes.items() if not key.startswith("final_layer")})
    with pytest.raises(UnknownCheckpointError) as caught:
        detect_family(state, "diffusion_model", source="flux1-broken.safetensors")
    message = str(caught.value)
    assert ("flux_bfl (diffusion_model): 7 of 9 key patterns found, missing 'final_layer.linear.weight', "
            "'final_layer.adaLN_modulation.1.weight'; matched 'img_in.weight', 'txt_in.weight'") in message
    assert "double_blocks (" in message  # what the file does hold
    chroma = on_meta(shapes | {"distilled_guidance_layer.in_proj.weight": (64, 64)})
    with pytest.raises(UnknownCheckpointError, match=r"flux_bfl .*has 'distilled_guidance_layer\.\*'"):
        detect_family(chroma, "diffusion_model")


def test_an_mlp_width_diffusers_cannot_build_is_named() -> None:
    shapes = bfl_layout(hidden=64, head_dim=16, double=1, single=1)
    shapes["double_blocks.0.img_mlp.0.weight"] = (3 * 64, 64)
    with pytest.raises(ModelFileError, match=r"img_mlp\.0\.weight has 192 rows, expected 256 = 4 x the hidden size"):
        flux_bfl.infer_config(on_meta(shapes))


# --- numbers: tiny random models written as BFL files -----------------------------------------------------


@pytest.fixture(scope="module")
def tiny_flux() -> torch.nn.Module:
    # Two blocks of each kind and the guidance embedder, so every mapped group is exercised.
    return build_flux(seed=5, num_layers=2, num_single_layers=2, guidance_embeds=True)


def velocity_inputs(module: torch.nn.Module) -> Iterator[torch.Tensor]:
    generator = torch.Generator().manual_seed(6)
    config = module.config
    yield torch.randn(2, 16, 6, 10, generator=generator)
    yield torch.tensor([0.9, 0.3])
    yield torch.randn(2, 7, config.joint_attention_dim, generator=generator)
    yield torch.randn(2, config.pooled_projection_dim, generator=generator)


def velocity_of(module: torch.nn.Module) -> torch.Tensor:
    x, sigma, context, pooled = velocity_inputs(module)
    with torch.no_grad():
        return flux.velocity(module, x, sigma, FluxConditioning(context, pooled), 2.5)


def save_bfl(module: torch.nn.Module, path: Path, prefix: str = "") -> Path:
    state = flux_bfl.from_diffusers(module.state_dict())
    save_file({prefix + key: value.contiguous() for key, value in state.items()}, str(path))
    return path


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."], ids=["bare", "comfyui-prefixed"])
def test_a_bfl_file_loads_and_computes_exactly_as_the_diffusers_module(tiny_flux: torch.nn.Module, tmp_path: Path,
                                                                        prefix: str) -> None:
    path = save_bfl(tiny_flux, tmp_path / "flux1-tiny.safetensors", prefix)
    model = load_diffusion_model(path, device="cpu")
    assert model.family.name == "flux_bfl" and model.latent_channels == 16
    assert model.module.config.guidance_embeds and model.module.config.num_single_layers == 2
    assert not any(isinstance(layer, UpcastLinear) for layer in model.module.modules())
    assert torch.equal(velocity_of(model.module), velocity_of(tiny_flux))


def test_bfl_weights_inside_an_all_in_one_checkpoint(tmp_path: Path) -> None:
    import json

    modules = build_all()
    state = {f"model.diffusion_model.{key}": value for key, value in flux_bfl.from_diffusers(
        modules.flux.state_dict()).items()}
    state |= {f"vae.{key}": value for key, value in modules.vae.state_dict().items()}
    state |= {f"text_encoders.clip_l.transformer.text_model.{key}": value
              for key, value in modules.clip.state_dict().items()}
    path = tmp_path / "flux1-tiny-aio.safetensors"
    save_file({key: value.contiguous() for key, value in state.items()}, str(path),
              metadata={"config": json.dumps({"vae": vae_config()})})
    write_tokenizer(path.with_name(path.stem + ".tokenizer"))
    model, _, vae = load_checkpoint(path, device="cpu")
    assert model.family.name == "flux_bfl" and vae.latent_channels == 16
    assert torch.equal(velocity_of(model.module), velocity_of(copy.deepcopy(modules.flux).eval()))


def test_the_row_reuses_the_diffusers_build_and_velocity() -> None:
    row, diffusers_row = FAMILIES["flux_bfl"], FAMILIES["flux"]
    assert row.build is diffusers_row.build and row.velocity is diffusers_row.velocity
    assert row.sampling == diffusers_row.sampling
