"""Model listing: safetensors files, and a diffusers-layout folder as one entry."""

from __future__ import annotations

from pathlib import Path

from engine.paths import Folders
from tests.unit.modeling.conftest import TinyLayouts


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def test_a_model_folder_is_one_entry_and_only_safetensors_are_listed(folders: Folders) -> None:
    checkpoints = folders.models_dir / "checkpoints"
    for name in ("a.safetensors", "sub/b.SFT", "c.ckpt", "d.pt", "notes.txt", ".hidden/e.safetensors",
                 "demo/model_index.json", "demo/transformer/diffusion_pytorch_model.safetensors",
                 "demo/vae/diffusion_pytorch_model.safetensors", "nested/other/model_index.json",
                 "nested/other/text_encoder/model.safetensors"):
        _touch(checkpoints / name)
    assert folders.list_models("checkpoints") == ["a.safetensors", "demo", "nested/other", "sub/b.SFT"]
    assert folders.resolve_model("checkpoints", "demo").is_dir()
    assert folders.choices("checkpoints") == folders.list_models("checkpoints")


def test_the_tiny_models_are_listed_where_the_loaders_look(tiny: TinyLayouts) -> None:
    folders = Folders.under(tiny.models_dir.parent)
    folders = Folders(tiny.models_dir, folders.input_dir, folders.output_dir, folders.temp_dir, folders.user_dir)
    assert folders.list_models("checkpoints") == ["tiny-flux", "tiny-single.safetensors"]
    assert folders.list_models("diffusion_models") == ["tiny-flux.safetensors"]
    assert folders.list_models("unet") == ["tiny-flux.safetensors"]  # ComfyUI's legacy name
    assert folders.list_models("text_encoders") == ["tiny-clip.safetensors"]
    assert folders.list_models("vae") == ["tiny-vae.safetensors"]
