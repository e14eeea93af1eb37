"""DiffusionModel.velocity: shapes, equality with a hand-made transformer call, sampling copies."""

from __future__ import annotations

import pytest
import torch

from modeling.conditioning import FluxConditioning, unpack_conditioning
from modeling.diffusion_model import DiffusionModel
from modeling.loading import load_diffusion_model
from modeling.packing import image_position_ids, pack_latents, text_position_ids, unpack_latents
from sampling.flow import FlowSampling
from tests.unit.modeling.conftest import TinyLayouts


@pytest.fixture(scope="module")
def model(tiny: TinyLayouts) -> DiffusionModel:
    return load_diffusion_model(tiny.folder, device="cpu")


def _inputs(batch: int, height: int, width: int) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(batch * 100 + height)
    return (torch.randn(batch, 16, height, width, generator=generator), torch.rand(batch, generator=generator),
            torch.randn(batch, 5, 64, generator=generator), torch.randn(batch, 64, generator=generator))


def test_velocity_equals_calling_the_transformer_by_hand(model: DiffusionModel, tiny: TinyLayouts) -> None:
    x, sigma, context, pooled = _inputs(2, 6, 4)
    velocity = model.velocity(x, sigma, FluxConditioning(context, pooled))
    assert velocity.shape == x.shape
    with torch.no_grad():
        tokens = tiny.modules.flux(hidden_states=pack_latents(x), encoder_hidden_states=context,
                                   pooled_projections=pooled, timestep=sigma, img_ids=image_position_ids(6, 4),
                                   txt_ids=text_position_ids(5), return_dict=False)[0]
    assert torch.allclose(velocity, unpack_latents(tokens, 6, 4), atol=1e-5)


def test_odd_sizes_are_padded_and_cropped(model: DiffusionModel) -> None:
    x, sigma, context, pooled = _inputs(1, 5, 7)
    assert model.velocity(x, sigma, FluxConditioning(context, pooled)).shape == (1, 16, 5, 7)


def test_a_shared_conditioning_and_a_scalar_sigma_broadcast(model: DiffusionModel) -> None:
    x, _, context, pooled = _inputs(3, 4, 4)
    shared = model.velocity(x, torch.tensor(0.4), FluxConditioning(context[:1], pooled[:1]))
    each = model.velocity(x, torch.full((3,), 0.4),
                          FluxConditioning(context[:1].expand(3, -1, -1), pooled[:1].expand(3, -1)))
    assert torch.allclose(shared, each, atol=1e-6)


def test_wrong_inputs_say_what_was_expected(model: DiffusionModel) -> None:
    x, sigma, context, pooled = _inputs(2, 4, 4)
    condition = FluxConditioning(context, pooled)
    with pytest.raises(ValueError, match="takes 16-channel latents"):
        model.velocity(torch.zeros(2, 4, 4, 4), sigma, condition)
    with pytest.raises(ValueError, match="one value per batch item"):
        model.velocity(x, torch.zeros(3), condition)
    with pytest.raises(ValueError, match="conditioning has batch 3 but the latent has batch 2"):
        model.velocity(x, sigma, FluxConditioning(torch.zeros(3, 5, 64), torch.zeros(3, 64)))


def test_a_conditioning_for_another_model_is_refused_where_it_enters(model: DiffusionModel) -> None:
    _, _, context, pooled = _inputs(2, 4, 4)
    with pytest.raises(ValueError, match=r"KSampler: positive\[0\]: the text sequence is 32 wide but the model "
                                         r"expects 64 \(joint_attention_dim"):
        unpack_conditioning("KSampler", "positive", [[torch.zeros(2, 5, 32), {"pooled_output": pooled}]], model)
    with pytest.raises(ValueError, match=r"positive\[0\]: its pooled_output must have shape \[2, \.\.\.\]"):
        unpack_conditioning("KSampler", "positive", [[context, {}]], model)
    with pytest.raises(ValueError, match="guidance must be a number"):
        unpack_conditioning("KSampler", "positive", [[context, {"pooled_output": pooled, "guidance": "high"}]], model)
    (condition,) = unpack_conditioning("KSampler", "positive", [[context, {"pooled_output": pooled, "guidance": 4}]],
                                       model)
    assert isinstance(condition, FluxConditioning) and condition.guidance.tolist() == [4.0, 4.0]


def test_with_sampling_shares_the_module(model: DiffusionModel) -> None:
    shifted = model.with_sampling(FlowSampling.sd3(3.0))
    assert shifted.module is model.module and shifted.sampling.shift == 3.0 and model.sampling.shift != 3.0
