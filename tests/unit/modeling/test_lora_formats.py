"""LoRA key layouts against an independent reference: diffusers' own LoRA conversion.

For the tiny FLUX transformer, each layout's file goes through diffusers'
`FluxLoraLoaderMixin.lora_state_dict` (which turns kohya, XLabs and BFL names into diffusers
module names, splitting fused qkv factors its own way); the reference model then adds each layer's
low-rank branch `strength * scale * B(A(x))` to that layer's output with forward hooks, which
involves no weight merging at all. Flowmill's model is patched by `LoraPatch` (key matching, row
slicing, float32 merge) and both outputs must agree to 1e-5. peft is not installed, so diffusers'
`load_lora_adapter` is not used; the hooks play PEFT's part.

CLIP LoRAs have no FLUX-specific conversion: their reference hooks are placed by the module names
the fixture wrote (tests/fixtures/tiny_loras.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional

from modeling.lora import LoraFormatError, LoraPatch, match_lora, parameter_shapes
from modeling.lora.formats import BFL, KOHYA, PEFT, XLABS, recognise_layout
from modeling.model_refs import WeightsSource
from tests.fixtures import tiny_loras
from tests.fixtures.tiny_loras import Factors, bfl_shapes, clip_layer_names, clip_shapes, flux_layer_names
from tests.fixtures.tiny_models import build_clip, build_flux

STRENGTH = 0.7
# The single-block linear1 factors go through diffusers only for full-size FLUX (its converter splits
# them at a hard-coded 3072); the tiny model's are checked against the fused definition instead.
NO_LINEAR1 = ("linear2", "modulation.lin")


def flux_output(flux: nn.Module) -> torch.Tensor:
    generator = torch.Generator().manual_seed(3)
    tokens, words = 16, 5
    with torch.no_grad():
        return flux(hidden_states=torch.randn(1, tokens, 64, generator=generator),
                    encoder_hidden_states=torch.randn(1, words, 64, generator=generator),
                    pooled_projections=torch.randn(1, 64, generator=generator),
                    timestep=torch.tensor([0.6]),
                    img_ids=torch.randn(tokens, 3, generator=generator),
                    txt_ids=torch.zeros(words, 3), return_dict=False)[0]


def clip_output(clip: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        output = clip(input_ids=torch.tensor([[5, 17, 40, 3, 99, 7]]))
    return torch.cat([output.last_hidden_state.flatten(), output.pooler_output.flatten()])


@contextmanager
def side_branches(model: nn.Module, branches: dict[str, tuple[torch.Tensor, torch.Tensor, float]]) -> Iterator[None]:
    """The reference: each named linear layer's output plus `scale * B(A(x))`, through forward hooks."""
    handles = []
    for name, (down, up, scale) in branches.items():
        try:
            layer = model.get_submodule(name)
        except AttributeError:  # transformers 5 names CLIPTextModel's layers without "text_model."
            layer = model.get_submodule(name.removeprefix("text_model."))

        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor, down=down, up=up, scale=scale) -> torch.Tensor:
            return output + scale * functional.linear(functional.linear(inputs[0], down), up)

        handles.append(layer.register_forward_hook(hook))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def diffusers_branches(path: Path, strength: float) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """Transformer layer -> (A, B, strength * alpha / rank) as diffusers converts the file at `path`."""
    from diffusers.loaders.lora_pipeline import FluxLoraLoaderMixin

    state, alphas = FluxLoraLoaderMixin.lora_state_dict(str(path), return_alphas=True)
    alphas = alphas or {}
    branches = {}
    for key, down in state.items():
        if not key.endswith(".lora_A.weight") or key.startswith("text_encoder."):
            continue
        layer = key.removesuffix(".lora_A.weight")
        up = state[f"{layer}.lora_B.weight"]
        alpha = alphas.get(f"{layer}.alpha")
        scale = strength * (float(alpha) / down.shape[0] if alpha is not None else 1.0)
        # Its kohya converter leaves top-level layers (x_embedder, norm_out, ...) without the prefix.
        branches[layer.removeprefix("transformer.")] = (down, up, scale)
    return branches


def fixture_branches(lora: dict[str, Factors], strength: float) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    return {name: (factors.down, factors.up,
                   strength * (factors.alpha / factors.down.shape[0] if factors.alpha is not None else 1.0))
            for name, factors in lora.items()}


def patched_output(model: nn.Module, path: Path, component: str, output: Callable[[nn.Module], torch.Tensor],
                   strength: float = STRENGTH) -> torch.Tensor:
    lora = LoraPatch(WeightsSource(str(path), "test"), strength, component)  # type: ignore[arg-type]
    undo = lora.apply(model, tiny_loras.site())
    try:
        return output(model)
    finally:
        undo()


def flux_lora(seed: int, *, alpha: float | None, double: tuple[str, ...] = tiny_loras.DOUBLE_LAYERS,
              single: tuple[str, ...] = NO_LINEAR1, top: tuple[str, ...] = tiny_loras.TOP_LAYERS) -> dict[str, Factors]:
    flux = build_flux()
    names = flux_layer_names(flux, double=double, single=single, top=top)
    return tiny_loras.random_lora(bfl_shapes(flux), names, seed=seed, alpha=alpha)


def assert_matches_reference(path: Path, reference: dict[str, tuple[torch.Tensor, torch.Tensor, float]]) -> None:
    flux = build_flux()
    base = flux_output(flux)
    with side_branches(flux, reference):
        expected = flux_output(flux)
    ours = patched_output(flux, path, "diffusion_model", flux_output)
    assert (expected - base).abs().max() > 1e-2  # the LoRA changes the output: the comparison can fail
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(flux_output(flux), base, atol=0, rtol=0)  # and the undo restored the base


def test_kohya_with_bfl_names_matches_diffusers(tmp_path: Path) -> None:
    # diffusers ignores alpha on the final layer (kohya scales it like any layer); leave it out there.
    lora = flux_lora(1, alpha=2.0, top=("img_in", "txt_in", "time_in.in_layer", "time_in.out_layer",
                                        "vector_in.in_layer", "vector_in.out_layer"))
    lora |= flux_lora(2, alpha=None, double=(), single=(), top=("final_layer.linear", "final_layer.adaLN_modulation.1"))
    path = tiny_loras.save(tmp_path / "kohya.safetensors", tiny_loras.kohya(lora))
    assert recognise_layout(tiny_loras.kohya(lora)) == KOHYA
    assert_matches_reference(path, diffusers_branches(path, STRENGTH))


def test_xlabs_matches_diffusers(tmp_path: Path) -> None:
    flux = build_flux()
    shapes = bfl_shapes(flux) | {"single_blocks.0.linear1_qkv": (3 * flux.x_embedder.weight.shape[0],
                                                                  flux.x_embedder.weight.shape[0])}
    names = ["double_blocks.0.img_attn.qkv", "double_blocks.0.img_attn.proj", "double_blocks.0.txt_attn.qkv",
             "double_blocks.0.txt_attn.proj", "single_blocks.0.linear1_qkv", "single_blocks.0.linear2"]
    state = tiny_loras.xlabs(tiny_loras.random_lora(shapes, names, seed=4))
    path = tiny_loras.save(tmp_path / "xlabs.safetensors", state)
    assert recognise_layout(state) == XLABS
    assert_matches_reference(path, diffusers_branches(path, STRENGTH))


@pytest.mark.parametrize("prefix", ["transformer.", ""])
def test_peft_with_diffusers_names_matches_diffusers(tmp_path: Path, prefix: str) -> None:
    flux = build_flux()
    shapes = {name.removesuffix(".weight"): tuple(shape) for name, shape in parameter_shapes(flux).items()
              if len(shape) == 2}
    names = [name for name in shapes if "blocks.0." in name or name in ("x_embedder", "proj_out", "norm_out.linear")]
    lora = tiny_loras.random_lora(shapes, names, seed=5, alpha=8.0)
    state = tiny_loras.peft(lora, prefix=prefix)
    path = tiny_loras.save(tmp_path / "peft.safetensors", state)
    # diffusers reads the transformer's layers under "transformer."; the unprefixed file is the same LoRA.
    prefixed = tiny_loras.save(tmp_path / "prefixed.safetensors", tiny_loras.peft(lora))
    reference = diffusers_branches(prefixed, STRENGTH)
    assert recognise_layout(state) == PEFT
    assert_matches_reference(path, reference)


def test_peft_alpha_from_the_adapter_settings_diffusers_writes_in_the_header(tmp_path: Path) -> None:
    """diffusers' save_lora_weights stores PEFT's lora_alpha and alpha_pattern as JSON in the header; PEFT
    scales a layer by alpha / rank, alpha_pattern entries matching module-name suffixes."""
    flux = build_flux()
    shapes = {name.removesuffix(".weight"): tuple(shape) for name, shape in parameter_shapes(flux).items()
              if len(shape) == 2}
    names = ["transformer_blocks.0.attn.to_q", "single_transformer_blocks.0.proj_out", "proj_out", "x_embedder"]
    lora = tiny_loras.random_lora(shapes, names, seed=16, rank=4)
    settings = {"transformer.r": 4, "transformer.lora_alpha": 8, "transformer.alpha_pattern": {"proj_out": 2}}
    path = tiny_loras.save(tmp_path / "peft-alpha.safetensors", tiny_loras.peft(lora),
                           metadata={"lora_adapter_metadata": json.dumps(settings)})
    from diffusers.loaders.lora_pipeline import FluxLoraLoaderMixin

    _, read_back = FluxLoraLoaderMixin.lora_state_dict(str(path), return_lora_metadata=True)
    assert read_back == settings  # the header is where and how diffusers keeps them
    scales = {"transformer_blocks.0.attn.to_q": 8 / 4, "single_transformer_blocks.0.proj_out": 2 / 4,
              "proj_out": 2 / 4, "x_embedder": 8 / 4}
    assert_matches_reference(path, {name: (lora[name].down, lora[name].up, STRENGTH * scale)
                                    for name, scale in scales.items()})


def test_bfl_ai_toolkit_names_match_diffusers(tmp_path: Path) -> None:
    # diffusers reads BFL names only in kohya spelling (lora_unet_, lora_down/up): give it the same
    # factors that way, and Flowmill the AI-toolkit file.
    lora = flux_lora(6, alpha=None)
    state = tiny_loras.bfl(lora)
    path = tiny_loras.save(tmp_path / "bfl.safetensors", state)
    kohya_path = tiny_loras.save(tmp_path / "as-kohya.safetensors", tiny_loras.kohya(lora))
    assert recognise_layout(state) == BFL
    assert_matches_reference(path, diffusers_branches(kohya_path, STRENGTH))


@pytest.mark.parametrize("write", [tiny_loras.kohya, tiny_loras.bfl])
def test_single_block_linear1_changes_q_k_v_and_mlp_rows_in_bfl_order(tmp_path: Path, write: Callable) -> None:
    """BFL's linear1 is to_q | to_k | to_v | proj_mlp stacked by rows (model-formats.md 1.2): the merged
    change of those four weights, stacked the same way, is the fused change `scale * up @ down`."""
    flux = build_flux()
    lora = tiny_loras.random_lora(bfl_shapes(flux), ["single_blocks.0.linear1"], seed=7, alpha=2.0)
    path = tiny_loras.save(tmp_path / "linear1.safetensors", write(lora))
    block = flux.single_transformer_blocks[0]
    parts = [block.attn.to_q, block.attn.to_k, block.attn.to_v, block.proj_mlp]
    before = torch.cat([part.weight.detach().clone() for part in parts])
    undo = LoraPatch(WeightsSource(str(path), "test"), STRENGTH, "diffusion_model").apply(flux, tiny_loras.site())
    after = torch.cat([part.weight.detach() for part in parts])
    undo()
    factors = lora["single_blocks.0.linear1"]
    expected = STRENGTH * (2.0 / 4) * factors.up @ factors.down
    torch.testing.assert_close(after - before, expected, atol=1e-6, rtol=1e-5)


def test_kohya_with_diffusers_names_is_the_same_lora_as_peft(tmp_path: Path) -> None:
    flux = build_flux()
    shapes = {name.removesuffix(".weight"): tuple(shape) for name, shape in parameter_shapes(flux).items()
              if len(shape) == 2}
    names = [name for name in shapes if "transformer_blocks.0." in name]
    lora = tiny_loras.random_lora(shapes, names, seed=8, alpha=1.0)
    for prefix in ("lora_unet_", "lora_transformer_"):
        path = tiny_loras.save(tmp_path / f"{prefix}.safetensors", tiny_loras.kohya(lora, prefix=prefix))
        assert_matches_reference(path, fixture_branches(lora, STRENGTH))


@pytest.mark.parametrize("layout", ["kohya", "peft"])
def test_clip_lora_matches_side_branches_on_the_named_layers(tmp_path: Path, layout: str) -> None:
    clip = build_clip()
    lora = tiny_loras.random_lora(clip_shapes(clip), clip_layer_names(clip), seed=9, alpha=2.0)
    state = tiny_loras.kohya(lora, "lora_te_") if layout == "kohya" else tiny_loras.peft(lora, "text_encoder.")
    path = tiny_loras.save(tmp_path / "clip.safetensors", state)
    base = clip_output(clip)
    with side_branches(clip, fixture_branches(lora, STRENGTH)):
        expected = clip_output(clip)
    ours = patched_output(clip, path, "text_encoder", clip_output)
    assert (expected - base).abs().max() > 1e-2
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def test_kohya_te1_prefix_reaches_the_clip_and_te2_is_another_encoder() -> None:
    clip = build_clip()
    lora = tiny_loras.random_lora(clip_shapes(clip), clip_layer_names(clip)[:2], seed=10)
    state = tiny_loras.kohya(lora, "lora_te1_") | tiny_loras.kohya(lora, "lora_te2_")
    match = match_lora(state, "text_encoder", parameter_shapes(clip), "te.safetensors")
    assert {change.target for change in match.changes} == {"encoder.layers.0.self_attn.q_proj.weight",
                                                            "encoder.layers.0.self_attn.k_proj.weight"}
    assert len(match.other_component) == 2 and not match.unmatched


def test_keys_of_the_other_component_are_skipped_not_errors() -> None:
    flux, clip = build_flux(), build_clip()
    state = tiny_loras.kohya(flux_lora(11, alpha=4.0)) | tiny_loras.kohya(
        tiny_loras.random_lora(clip_shapes(clip), clip_layer_names(clip), seed=12), "lora_te_")
    on_flux = match_lora(state, "diffusion_model", parameter_shapes(flux), "both.safetensors")
    on_clip = match_lora(state, "text_encoder", parameter_shapes(clip), "both.safetensors")
    assert on_flux.changes and on_clip.changes and not on_flux.unmatched and not on_clip.unmatched
    assert len(on_flux.other_component) == len(clip_layer_names(clip))
    assert all(change.target.startswith("encoder.layers.") for change in on_clip.changes)
    # A text-encoder-only LoRA changes nothing in the transformer: that is the no-match error.
    text_only = {key: value for key, value in state.items() if key.startswith("lora_te_")}
    with pytest.raises(LoraFormatError, match="no weight of this LoRA fits the diffusion model"):
        match_lora(text_only, "diffusion_model", parameter_shapes(flux), "te.safetensors").require_changes("te")


def test_a_lora_for_another_model_names_the_layout_and_what_the_model_expects() -> None:
    flux = build_flux()
    sd_keys = ["lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
               "lora_unet_mid_block_attentions_0_proj_in"]
    state = {f"{key}.{part}": torch.zeros(4, 8) for key in sd_keys for part in ("lora_down.weight",
                                                                                 "lora_up.weight")}
    with pytest.raises(LoraFormatError) as caught:
        match_lora(state, "diffusion_model", parameter_shapes(flux), "sd15.safetensors").require_changes(
            "sd15.safetensors")
    message = str(caught.value)
    assert "sd15.safetensors" in message and "recognised as kohya" in message
    assert "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight" in message
    assert "lora_unet_transformer_blocks_0_" in message  # what this model's layers are called


def test_a_file_in_no_lora_layout_says_so() -> None:
    flux = build_flux()
    state = {"model.diffusion_model.img_in.weight": torch.zeros(2, 2)}
    with pytest.raises(LoraFormatError, match="in no LoRA layout Flowmill knows.*model.diffusion_model.img_in"):
        match_lora(state, "diffusion_model", parameter_shapes(flux), "x").require_changes("x")


def test_a_lora_for_a_larger_flux_is_a_size_error() -> None:
    big = build_flux(num_attention_heads=4)
    small = build_flux()
    state = tiny_loras.kohya(tiny_loras.random_lora(bfl_shapes(big), ["double_blocks.0.img_attn.qkv"], seed=13))
    with pytest.raises(LoraFormatError, match=r"double_blocks_0_img_attn_qkv.*192x64 in the LoRA but 96x32"):
        match_lora(state, "diffusion_model", parameter_shapes(small), "big.safetensors")


@pytest.mark.parametrize(("extra", "kind"), [("lora_unet_img_in.dora_scale", "DoRA"),
                                             ("lora_unet_img_in.lora_mid.weight", "LoCon"),
                                             ("diffusion_model.img_in.diff_b", "bias differences")])
def test_adapter_parts_a_plain_merge_would_get_wrong_are_refused(extra: str, kind: str) -> None:
    flux = build_flux()
    state = tiny_loras.kohya(tiny_loras.random_lora(bfl_shapes(flux), ["img_in"], seed=14)) | {extra: torch.ones(1)}
    with pytest.raises(LoraFormatError, match=kind):
        match_lora(state, "diffusion_model", parameter_shapes(flux), "x.safetensors")


def test_a_layer_without_its_up_factor_is_an_error() -> None:
    flux = build_flux()
    state = tiny_loras.peft(tiny_loras.random_lora(bfl_shapes(flux), ["img_in"], seed=15), prefix="diffusion_model.")
    del state["diffusion_model.img_in.lora_B.weight"]
    with pytest.raises(LoraFormatError, match="'img_in' has no up"):
        match_lora(state, "diffusion_model", parameter_shapes(flux), "x.safetensors")
