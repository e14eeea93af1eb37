"""Editors on a guidance-distilled transformer (FLUX dev's `guidance_embeds`): the scale is the model's
guidance input, there is no negative pass, and FlowEdit's two sides are separate calls."""

from __future__ import annotations

import torch

from modeling.diffusion_model import DiffusionModel
from modeling.families import FAMILIES
from modeling.conditioning import FluxConditioning
from modeling.guidance import Prompting, edit_velocities, guidance_distilled, side_velocity
from sampling.flow import FlowSampling
from tests.fixtures.tiny_models import TEXT_HIDDEN, build_flux


def tiny_model(guidance_embeds: bool) -> DiffusionModel:
    module = build_flux(3, guidance_embeds=guidance_embeds)
    return DiffusionModel(module, FAMILIES["flux"], FlowSampling.sd3(), 16, torch.device("cpu"), torch.float32)


def condition(seed: int) -> FluxConditioning:
    generator = torch.Generator().manual_seed(seed)
    return FluxConditioning(torch.randn(1, 5, TEXT_HIDDEN, generator=generator),
                         torch.randn(1, TEXT_HIDDEN, generator=generator))


def test_a_distilled_model_takes_the_scale_as_guidance_and_skips_the_negative() -> None:
    model = tiny_model(guidance_embeds=True)
    assert guidance_distilled(model) and not guidance_distilled(tiny_model(guidance_embeds=False))
    positive, negative = condition(0), condition(1)
    x, sigma = torch.randn(2, 16, 4, 4, generator=torch.Generator().manual_seed(2)), torch.full((2,), 0.7)
    velocity = side_velocity(model, Prompting((positive,), (negative,), 5.5), 2)
    expected = model.velocity(x, sigma, FluxConditioning(positive.context.expand(2, -1, -1),
                                                         positive.pooled.expand(2, -1)), guidance=5.5)
    torch.testing.assert_close(velocity(x, sigma), expected)
    other_scale = side_velocity(model, Prompting((positive,), (negative,), 1.5), 2)
    assert not torch.allclose(other_scale(x, sigma), expected)
    # FlowEdit's sides cannot share one batched call when each needs its own guidance input.
    assert edit_velocities(model, Prompting((positive,), None, 1.5), Prompting((negative,), None, 5.5), 2).both is None


def test_a_real_cfg_model_batches_both_sides_of_flowedit_into_one_call() -> None:
    model = tiny_model(guidance_embeds=False)
    source = Prompting((condition(0),), (condition(1),), 3.5)
    target = Prompting((condition(2),), (condition(1),), 6.0)
    velocities = edit_velocities(model, source, target, 2)
    assert velocities.both is not None
    z_source, z_target = torch.randn(2, 2, 16, 4, 4, generator=torch.Generator().manual_seed(4))
    sigma = torch.full((2,), 0.4)
    batched = velocities.both(z_source, z_target, sigma)
    torch.testing.assert_close(batched[0], velocities.source(z_source, sigma), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batched[1], velocities.target(z_target, sigma), atol=1e-5, rtol=1e-5)
