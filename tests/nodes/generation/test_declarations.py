"""The generation nodes declare ComfyUI's ids, input names and order, and output names.

Saved ComfyUI workflows and API prompts address inputs by name and outputs by slot, so these
must match ComfyUI's nodes.py and comfy_extras (nodes_custom_sampler, nodes_model_advanced,
nodes_sd3) exactly.
"""

from __future__ import annotations

import pytest

from engine.paths import Folders
from engine.registry import NodeRegistry, node_info

# node id -> (required inputs in order, optional inputs, output types, output names)
COMFYUI = {
    "CheckpointLoaderSimple": (["ckpt_name"], [], ["MODEL", "CLIP", "VAE"], ["MODEL", "CLIP", "VAE"]),
    "UNETLoader": (["unet_name", "weight_dtype"], [], ["MODEL"], ["MODEL"]),
    "VAELoader": (["vae_name"], [], ["VAE"], ["VAE"]),
    "CLIPLoader": (["clip_name", "type"], ["device"], ["CLIP"], ["CLIP"]),
    "CLIPTextEncode": (["text", "clip"], [], ["CONDITIONING"], ["CONDITIONING"]),
    "EmptyLatentImage": (["width", "height", "batch_size"], [], ["LATENT"], ["LATENT"]),
    "EmptySD3LatentImage": (["width", "height", "batch_size"], [], ["LATENT"], ["LATENT"]),
    "VAEDecode": (["samples", "vae"], [], ["IMAGE"], ["IMAGE"]),
    "VAEEncode": (["pixels", "vae"], [], ["LATENT"], ["LATENT"]),
    "LatentUpscale": (["samples", "upscale_method", "width", "height", "crop"], [], ["LATENT"], ["LATENT"]),
    "KSampler": (
        ["model", "seed", "steps", "cfg", "sampler_name", "scheduler", "positive", "negative", "latent_image",
         "denoise"],
        [], ["LATENT"], ["LATENT"],
    ),
    "SamplerCustomAdvanced": (
        ["noise", "guider", "sampler", "sigmas", "latent_image"], [], ["LATENT", "LATENT"],
        ["output", "denoised_output"],
    ),
    "RandomNoise": (["noise_seed"], [], ["NOISE"], ["NOISE"]),
    "CFGGuider": (["model", "positive", "negative", "cfg"], [], ["GUIDER"], ["GUIDER"]),
    "BasicGuider": (["model", "conditioning"], [], ["GUIDER"], ["GUIDER"]),
    "KSamplerSelect": (["sampler_name"], [], ["SAMPLER"], ["SAMPLER"]),
    "BasicScheduler": (["model", "scheduler", "steps", "denoise"], [], ["SIGMAS"], ["SIGMAS"]),
    "ModelSamplingFlux": (["model", "max_shift", "base_shift", "width", "height"], [], ["MODEL"], ["MODEL"]),
    "ModelSamplingSD3": (["model", "shift"], [], ["MODEL"], ["MODEL"]),
}


@pytest.mark.parametrize("node_id", sorted(COMFYUI))
def test_inputs_and_outputs_match_comfyui(registry: NodeRegistry, folders: Folders, node_id: str) -> None:
    spec = registry.get(node_id)
    assert spec is not None, f"{node_id} is not registered"
    info = node_info(spec, folders.choices)
    required, optional, outputs, names = COMFYUI[node_id]
    assert info["input_order"].get("required", []) == required
    assert info["input_order"].get("optional", []) == optional
    assert info["output"] == outputs
    assert info["output_name"] == names


def test_widget_defaults_and_bounds_match_comfyui(registry: NodeRegistry, folders: Folders) -> None:
    def options(node_id: str, name: str) -> dict:
        spec = registry.get(node_id)
        assert spec is not None
        info = node_info(spec, folders.choices)
        return info["input"]["required"][name][1]

    assert options("KSampler", "steps").items() >= {"default": 20, "min": 1, "max": 10000}.items()
    cfg = {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}
    assert options("KSampler", "cfg").items() >= cfg.items()
    assert options("CFGGuider", "cfg").items() >= cfg.items()
    assert options("KSampler", "denoise").items() >= {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}.items()
    assert options("KSampler", "seed")["control_after_generate"] is True
    assert options("RandomNoise", "noise_seed")["control_after_generate"] is True
    assert options("EmptyLatentImage", "width").items() >= {"default": 512, "min": 16, "max": 16384, "step": 8}.items()
    sd3_side = {"default": 1024, "min": 16, "max": 16384, "step": 16}
    assert options("EmptySD3LatentImage", "height").items() >= sd3_side.items()
    assert options("ModelSamplingFlux", "max_shift").items() >= {"default": 1.15, "min": 0.0, "max": 100.0}.items()
    assert options("ModelSamplingFlux", "base_shift").items() >= {"default": 0.5, "min": 0.0, "max": 100.0}.items()
    assert options("ModelSamplingFlux", "width").items() >= {"default": 1024, "min": 16, "step": 8}.items()
    assert options("ModelSamplingSD3", "shift").items() >= {"default": 3.0, "min": 0.0, "max": 100.0}.items()
    assert options("CLIPTextEncode", "text")["multiline"] is True


def test_combos_list_the_registries(registry: NodeRegistry, folders: Folders) -> None:
    from sampling.samplers import sampler_names
    from sampling.schedules import scheduler_names

    info = node_info(registry.get("KSampler"), folders.choices)["input"]["required"]
    assert info["sampler_name"][0] == sampler_names() and info["scheduler"][0] == scheduler_names()
    assert {"euler", "heun"} <= set(info["sampler_name"][0])
    select = node_info(registry.get("KSamplerSelect"), folders.choices)["input"]["required"]
    assert select["sampler_name"][0] == sampler_names()
    upscale = node_info(registry.get("LatentUpscale"), folders.choices)["input"]["required"]
    assert upscale["upscale_method"][0] == ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]
    assert upscale["crop"][0] == ["disabled", "center"]
    unet = node_info(registry.get("UNETLoader"), folders.choices)["input"]["required"]
    assert unet["weight_dtype"][0] == ["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"]


def test_loader_combos_list_the_model_folders(registry: NodeRegistry, folders: Folders) -> None:
    def listing(node_id: str, name: str) -> list[str]:
        return node_info(registry.get(node_id), folders.choices)["input"]["required"][name][0]

    # A diffusers-layout folder is one entry; tokenizer folders and config files are not listed.
    assert listing("CheckpointLoaderSimple", "ckpt_name") == ["tiny-demo", "tiny-single.safetensors"]
    assert listing("UNETLoader", "unet_name") == ["tiny-flux.safetensors"]
    assert listing("VAELoader", "vae_name") == ["tiny-vae.safetensors"]
    assert listing("CLIPLoader", "clip_name") == ["tiny-clip.safetensors"]
