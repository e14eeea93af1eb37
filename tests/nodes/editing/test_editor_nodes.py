"""FlowEdit, RFEdit and RFInversionEdit on the shipped demo model (issue 6, "Tests").

The identities of tests/unit/sampling/test_editors.py, now through the nodes, the real transformer
and its attention processors: one prompt on both sides of FlowEdit returns the source latent
exactly; RF-Inversion steered with eta = 1 on every step lands on the source; RF-Edit with inject 0
is RF-Solver inversion (InvertToNoise) plus RF-Solver sampling, and with inject > 0 every injected
feature finds its stored twin. Bad settings fail naming the node and the input.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modeling.feature_sharing import FeatureBank, FeatureKey, ValueSharing, shared_value_features
from modeling.guidance import Prompting, side_velocity
from sampling.rf_edit import Stage, rf_edit
from sampling.schedules import compute_sigmas
from tests.nodes.editing.conftest import Demo
from tests.nodes.generation.conftest import Nodes
from training.shapes.evaluate import read_scene

SOURCE = "a red circle on a blue background"
TARGET = "a green circle on a blue background"


def flowedit(nodes: Nodes, demo: Demo, source: str, target: str, **settings: object) -> dict:
    empty = demo.encode(nodes, "")
    widgets = {"preset": "widgets", "steps": 12, "n_max": 9, "n_min": 0, "n_avg": 1, "source_cfg": 1.5,
               "target_cfg": 5.0, "seed": 3, **settings}
    return nodes.one("FlowEdit", model=demo.model, source_positive=demo.encode(nodes, source), source_negative=empty,
                     target_positive=demo.encode(nodes, target), target_negative=empty,
                     latent_image=demo.latent, **widgets)


def rf_inversion(nodes: Nodes, demo: Demo, **settings: object) -> dict:
    widgets = {"steps": 10, "gamma": 0.5, "eta": 0.9, "start": 0.0, "stop": 0.25, "target_cfg": 4.0, "seed": 0,
               **settings}
    return nodes.one("RFInversionEdit", model=demo.model, source_positive=demo.encode(nodes, SOURCE),
                     target_positive=demo.encode(nodes, TARGET), target_negative=demo.encode(nodes, ""),
                     latent_image=demo.latent, **widgets)


def rf_edit_node(nodes: Nodes, demo: Demo, **settings: object) -> dict:
    widgets = {"steps": 6, "inject": 2, "target_cfg": 4.0, "blocks": "auto", "feature_bank": "cpu", **settings}
    return nodes.one("RFEdit", model=demo.model, source_positive=demo.encode(nodes, SOURCE),
                     target_positive=demo.encode(nodes, TARGET), target_negative=demo.encode(nodes, ""),
                     latent_image=demo.latent, **widgets)


def decoded_reading(nodes: Nodes, demo: Demo, latent: dict) -> object:
    image = nodes.one("VAEDecode", samples=latent, vae=demo.vae)
    return read_scene((image[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy())


def test_flowedit_with_one_prompt_on_both_sides_returns_the_source_exactly(demo_nodes: Nodes, demo: Demo) -> None:
    edited = flowedit(demo_nodes, demo, SOURCE, SOURCE, n_avg=2, source_cfg=2.5, target_cfg=2.5)
    assert torch.equal(edited["samples"], demo.latent["samples"])


def test_flowedit_turns_the_red_circle_green_and_keeps_the_rest(demo_nodes: Nodes, demo: Demo) -> None:
    demo_nodes.reports.calls.clear()
    edited = flowedit(demo_nodes, demo, SOURCE, TARGET, preset="demo")
    reading = decoded_reading(demo_nodes, demo, edited)
    assert (reading.colour, reading.shape, reading.background) == ("green", "circle", "blue")
    # Progress counts the edited steps of the demo preset.
    steps = [(value, total) for value, total, _ in demo_nodes.reports.calls]
    assert steps[-1][0] == steps[-1][1] and len(steps) == steps[-1][1]


def test_rf_inversion_with_eta_one_throughout_returns_the_source(demo_nodes: Nodes, demo: Demo) -> None:
    edited = rf_inversion(demo_nodes, demo, eta=1.0, start=0.0, stop=1.0)
    torch.testing.assert_close(edited["samples"], demo.latent["samples"], atol=2e-6, rtol=0)


def test_rf_inversion_reports_both_phases_on_one_bar(demo_nodes: Nodes, demo: Demo) -> None:
    demo_nodes.reports.calls.clear()
    rf_inversion(demo_nodes, demo, steps=5)
    assert [(value, total) for value, total, _ in demo_nodes.reports.calls] == [(i, 10) for i in range(1, 11)]


def test_rf_edit_with_inject_zero_is_invert_to_noise_plus_rf_solver_sampling(demo_nodes: Nodes, demo: Demo) -> None:
    nodes = demo_nodes
    edited = rf_edit_node(nodes, demo, inject=0)
    sigmas = nodes.one("BasicScheduler", model=demo.model, scheduler="simple", steps=6, denoise=1.0)
    sampler = nodes.one("KSamplerSelect", sampler_name="rf_solver")
    source_guider = nodes.one("BasicGuider", model=demo.model, conditioning=demo.encode(nodes, SOURCE))
    noise, _ = nodes.run("InvertToNoise", guider=source_guider, sigmas=sigmas, latent_image=demo.latent,
                         sampler=sampler)
    target_guider = nodes.one("CFGGuider", model=demo.model, positive=demo.encode(nodes, TARGET),
                              negative=demo.encode(nodes, ""), cfg=4.0)
    expected = nodes.run("SamplerCustomAdvanced", noise=noise, guider=target_guider, sampler=sampler, sigmas=sigmas,
                         latent_image=demo.latent)[0]
    torch.testing.assert_close(edited["samples"], expected["samples"], atol=1e-5, rtol=1e-5)
    # Injecting changes the result.
    assert not torch.allclose(rf_edit_node(nodes, demo, inject=2)["samples"], edited["samples"], atol=1e-4)


def test_rf_edit_on_the_demo_transformer_injects_every_stored_feature(demo_nodes: Nodes, demo: Demo) -> None:
    source = Prompting((_condition(demo_nodes, demo, SOURCE),), None, 1.0)
    target = Prompting((_condition(demo_nodes, demo, TARGET),), (_condition(demo_nodes, demo, ""),), 4.0)
    bank = FeatureBank()
    sharing = ValueSharing(bank)
    with demo_nodes.models.use(demo.model) as model, shared_value_features(model.module, (2, 3), sharing):
        rf_edit(side_velocity(model, source, 1), side_velocity(model, target, 1), demo.latent["samples"],
                compute_sigmas(model.sampling, "simple", 6), inject=3, sharing=sharing)
    expected = {FeatureKey(step, stage, block) for step in range(3) for stage in Stage for block in (2, 3)}
    assert bank.stored_keys == expected and bank.injected_keys == expected
    # Stored from the unguided source pass (batch 1) and injected into the CFG pass (batch 2, both halves).
    assert {bank.stored_shape(key)[0] for key in expected} == {1}


def _condition(nodes: Nodes, demo: Demo, text: str) -> object:
    from modeling.conditioning import unpack_conditioning

    with nodes.models.use(demo.model) as model:
        return unpack_conditioning("test", "text", demo.encode(nodes, text), model)[0]


@pytest.mark.parametrize(("node", "settings", "message"), [
    ("RFEdit", {"blocks": "7"}, r"^RFEdit: blocks: '7' is not a range within this model's single blocks 0-3"),
    ("RFEdit", {"inject": 9}, r"^RFEdit: RF-Edit's inject must be between 0 and the number of steps \(6\)"),
    ("FlowEdit", {"n_max": 20}, r"^FlowEdit: FlowEdit needs 0 <= n_min <= n_max <= steps"),
    ("RFInversionEdit", {"start": 0.6, "stop": 0.2}, r"^RFInversionEdit: RF-Inversion needs 0 <= start <= stop"),
])
def test_bad_settings_name_the_node_and_what_was_expected(demo_nodes: Nodes, demo: Demo, node: str,
                                                          settings: dict, message: str) -> None:
    run = {"RFEdit": rf_edit_node, "RFInversionEdit": rf_inversion}.get(node)
    with pytest.raises(ValueError, match=message):
        if run is None:
            flowedit(demo_nodes, demo, SOURCE, TARGET, **settings)
        else:
            run(demo_nodes, demo, **settings)


def test_an_empty_latent_is_refused_as_a_source(demo_nodes: Nodes, demo: Demo) -> None:
    demo.latent = {"samples": torch.zeros_like(demo.latent["samples"])}
    with pytest.raises(ValueError, match="^FlowEdit: latent_image is all zeros"):
        flowedit(demo_nodes, demo, SOURCE, TARGET)


def test_the_editors_keep_the_latent_dict_and_return_cpu_float32(demo_nodes: Nodes, demo: Demo) -> None:
    demo.latent = {**demo.latent, "batch_index": [0]}
    edited = rf_edit_node(demo_nodes, demo, steps=3, inject=1)
    assert edited["batch_index"] == [0] and edited["samples"].dtype == torch.float32
    assert edited["samples"].device.type == "cpu" and np.isfinite(edited["samples"].numpy()).all()
