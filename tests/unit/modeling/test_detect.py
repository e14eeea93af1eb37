"""Family detection from keys, and what the error says when nothing fits."""

from __future__ import annotations

import pytest
import torch

from modeling.detect import UnknownCheckpointError, detect_family
from modeling.families import FAMILIES, families_for
from modeling.files import load_state_dict
from tests.unit.modeling.conftest import TinyLayouts


@pytest.mark.parametrize(("attribute", "family", "component"), [
    ("flux", "flux", "diffusion_model"),
    ("vae", "autoencoder_kl", "vae"),
    ("clip", "clip_text", "text_encoder"),
])
def test_each_family_is_detected_from_its_tiny_model(tiny: TinyLayouts, attribute: str, family: str,
                                                     component: str) -> None:
    state = getattr(tiny.modules, attribute).state_dict()
    assert detect_family(state).name == family
    assert detect_family(state, component).name == family


def test_legacy_and_comfyui_clip_layouts_are_the_same_family(tiny: TinyLayouts) -> None:
    state = tiny.modules.clip.state_dict()
    for prefix in ("text_model.", "transformer.text_model."):
        prefixed = {prefix + key: value for key, value in state.items()}
        prefixed[prefix + "embeddings.position_ids"] = torch.arange(16)[None]
        assert detect_family(prefixed, "text_encoder").name == "clip_text"


def test_loose_files_are_detected_without_a_component_hint(tiny: TinyLayouts) -> None:
    found = {detect_family(load_state_dict(path)).name for path in
             (tiny.loose.diffusion_model, tiny.loose.vae, tiny.loose.text_encoder)}
    assert found == {"flux", "autoencoder_kl", "clip_text"}


def test_a_component_hint_rules_out_other_families(tiny: TinyLayouts) -> None:
    with pytest.raises(UnknownCheckpointError, match="this vae is not a checkpoint"):
        detect_family(tiny.modules.flux.state_dict(), "vae")


def test_unknown_checkpoint_names_partial_matches_and_key_groups(tiny: TinyLayouts) -> None:
    state = {key: value for key, value in tiny.modules.flux.state_dict().items()
             if not key.startswith(("x_embedder", "proj_out"))}
    state["some_head.weight"] = torch.zeros(2)
    with pytest.raises(UnknownCheckpointError) as caught:
        detect_family(state, source="models/diffusion_models/broken.safetensors")
    message = str(caught.value)
    assert message.startswith("models/diffusion_models/broken.safetensors: this model is not a checkpoint")
    assert ("flux (diffusion_model): 6 of 8 key patterns found, missing 'x_embedder.weight', 'proj_out.weight'"
            in message)
    assert "transformer_blocks (" in message and "some_head (1 keys)" in message
    assert ("Known families: flux (diffusion_model), flux_bfl (diffusion_model), unet (diffusion_model), "
            "wan (diffusion_model), autoencoder_kl (vae), clip_text (text_encoder)") in message
    assert isinstance(caught.value, ValueError)


def test_unknown_keys_say_nothing_matched() -> None:
    with pytest.raises(UnknownCheckpointError, match="no known family matched any of its key patterns") as caught:
        detect_family({"model.layers.0.weight": torch.zeros(1), "model.layers.1.weight": torch.zeros(1)})
    assert "model.layers (2 keys)" in str(caught.value)  # one shared top name: described a level deeper


def test_the_table_is_read_only_and_covers_every_component() -> None:
    with pytest.raises(TypeError):
        FAMILIES["x"] = FAMILIES["flux"]  # type: ignore[index]
    assert [family.name for family in families_for("vae")] == ["autoencoder_kl"]
    assert FAMILIES["flux"].sampling is not None and FAMILIES["autoencoder_kl"].latent_format(16) is not None
