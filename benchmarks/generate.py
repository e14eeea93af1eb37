"""Text-to-image on the shipped demo model: speed on this machine, Flowmill's overhead, and quality.

1. Images per second: the default workflow (workflows/default.json: 64x64, 20 euler steps, CFG
   from the checkpoint) through Flowmill's executor and nodes, a new seed per image, so the
   loader and prompt encodings come from the cache and KSampler, VAEDecode and SaveImage run.
   The first (cold) run, which loads the checkpoint, is reported on its own.
2. Framework overhead: the same generation as a plain loop that calls the same transformer, text
   encoder and VAE directly (loaded with diffusers/transformers `from_pretrained`, prompts encoded
   once, CFG on a doubled batch, Euler on the same sigmas, PNG written with PIL). Flowmill and the
   plain loop alternate image by image, so machine noise hits both alike; medians are compared.
   Target: overhead under 5%. Both must produce the same pixels (printed).
3. Quality: the evaluator's scores on 200 held-out caption/seed pairs (training/evaluate_demo.py), and
   per typed-prompt wording on held-out scenes (training/shapes/held_out_wordings.py).

Run: `python benchmarks/generate.py` (add `--images 4 --pairs 40` for a quick look).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import torch
from PIL import Image

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from diffusers import AutoencoderKL, FluxTransformer2DModel  # noqa: E402
from transformers import CLIPTextModel, CLIPTokenizer  # noqa: E402

from engine.cache import OutputCache  # noqa: E402
from engine.convert import load_workflow  # noqa: E402
from engine.executor import Executor, RunRequest  # noqa: E402
from engine.paths import Folders  # noqa: E402
from engine.registry import NodeRegistry  # noqa: E402
from engine.validation import validate_prompt  # noqa: E402
from modeling.loading import read_model_settings  # noqa: E402
from modeling.manager import build_model_manager  # noqa: E402
from modeling.packing import image_position_ids, pack_latents, text_position_ids, unpack_latents  # noqa: E402
from sampling.flow import FlowSampling  # noqa: E402
from sampling.noise import seeded_noise  # noqa: E402
from sampling.schedules import compute_sigmas  # noqa: E402
from training.evaluate_demo import EvaluationSettings, evaluate  # noqa: E402

CHECKPOINT = PROJECT / "models" / "checkpoints" / "flowmill-shapes-demo"
WORKFLOW = PROJECT / "workflows" / "default.json"


class FlowmillRun:
    """The default workflow through the real registry, validator and executor (warm cache).

    Timed: validation and execution (loader and prompts cached, KSampler, VAEDecode, SaveImage
    with its metadata and atomic write). The PNG is read back for the pixel comparison afterwards."""

    def __init__(self, work: Path) -> None:
        self.folders = Folders(PROJECT / "models", work / "input", work / "output", work / "temp", work / "user")
        self.folders.create()
        self.registry = NodeRegistry()
        self.registry.discover("nodes")
        self.executor = Executor(self.registry, OutputCache(), self.folders,
                                 models=build_model_manager(torch.device("cpu")))
        self.prompt = load_workflow(json.loads(WORKFLOW.read_text()), self.registry.object_info(self.folders.choices))
        self.sampler_id = next(key for key, node in self.prompt.items() if node["class_type"] == "KSampler")

    def settings(self) -> dict:
        return self.prompt[self.sampler_id]["inputs"]

    def with_seed(self, seed: int) -> dict:
        prompt = json.loads(json.dumps(self.prompt))
        prompt[self.sampler_id]["inputs"]["seed"] = seed
        return prompt

    def run(self, prompt: dict) -> Path:
        """Validate and execute, as the server's worker does; the path of the saved PNG."""
        checked = validate_prompt(prompt, self.registry, folders=self.folders)
        result = self.executor.run(RunRequest(str(uuid.uuid4()), checked.prompt, checked.outputs), lambda event: None)
        if result.status != "success":
            raise RuntimeError(f"the default workflow failed: {result.failure}")
        saved = next(image for ui in result.outputs.values() for image in ui.get("images", []))
        return self.folders.output_dir / saved["subfolder"] / saved["filename"]

    @staticmethod
    def pixels(path: Path) -> np.ndarray:
        with Image.open(path) as png:
            return np.asarray(png.convert("RGB"))


class PlainLoop:
    """The same generation written directly against diffusers and transformers, no Flowmill code
    on the hot path except the FLUX packing helpers and the shared noise/sigma definitions."""

    def __init__(self, checkpoint: Path, prompt: str, negative: str, steps: int, cfg: float, out: Path) -> None:
        self.transformer = FluxTransformer2DModel.from_pretrained(checkpoint / "transformer", torch_dtype=torch.float32)
        self.vae = AutoencoderKL.from_pretrained(checkpoint / "vae", torch_dtype=torch.float32)
        tokenizer = CLIPTokenizer.from_pretrained(checkpoint / "tokenizer")
        text_encoder = CLIPTextModel.from_pretrained(checkpoint / "text_encoder", torch_dtype=torch.float32)
        ids = tokenizer([prompt, negative], padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids
        with torch.no_grad():
            encoded = text_encoder(input_ids=ids)
        self.context, self.pooled = encoded.last_hidden_state, encoded.pooler_output
        shift = read_model_settings(checkpoint).get("sampling", {}).get("shift", 1.0)
        self.sigmas = compute_sigmas(FlowSampling(shift=shift), "simple", steps)
        self.cfg, self.out = cfg, out
        self.image_ids, self.text_ids = image_position_ids(8, 8), text_position_ids(ids.shape[1])

    @torch.no_grad()
    def image(self, seed: int) -> np.ndarray:
        x = seeded_noise(seed, (1, 16, 8, 8))
        for sigma, sigma_next in zip(self.sigmas[:-1], self.sigmas[1:], strict=True):
            velocity = self.transformer(
                hidden_states=pack_latents(torch.cat([x, x])), encoder_hidden_states=self.context,
                pooled_projections=self.pooled, timestep=sigma.expand(2), img_ids=self.image_ids,
                txt_ids=self.text_ids, return_dict=False)[0]
            positive, negative = unpack_latents(velocity, 8, 8).chunk(2)
            x = x + (sigma_next - sigma) * (negative + self.cfg * (positive - negative))
        latent = x / self.vae.config.scaling_factor + self.vae.config.shift_factor
        pixels = self.vae.decode(latent).sample.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
        array = pixels[0].permute(1, 2, 0).numpy()
        Image.fromarray(array).save(self.out / f"plain_{seed}.png", compress_level=4)
        return array


def timed(function, *args):
    started = time.perf_counter()
    value = function(*args)
    return time.perf_counter() - started, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=12, help="images per side for the speed comparison")
    parser.add_argument("--pairs", type=int, default=EvaluationSettings.pairs, help="caption/seed pairs to score")
    parser.add_argument("--wording-scenes", type=int, default=EvaluationSettings.wording_scenes,
                        help="held-out scenes per typed-prompt wording (0 skips that figure)")
    args = parser.parse_args(argv)
    if not (CHECKPOINT / "model_index.json").is_file():
        print(f"the demo checkpoint is missing: {CHECKPOINT}", file=sys.stderr)
        return 1
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")

    with tempfile.TemporaryDirectory() as work:
        flowmill = FlowmillRun(Path(work))
        cold, _ = timed(flowmill.run, flowmill.with_seed(10_000))
        settings = flowmill.settings()
        positive = flowmill.prompt[settings["positive"][0]]["inputs"]["text"]
        negative = flowmill.prompt[settings["negative"][0]]["inputs"]["text"]
        plain = PlainLoop(CHECKPOINT, positive, negative, settings["steps"], settings["cfg"], Path(work))
        plain.image(10_000)  # warm-up, as Flowmill's cold run was
        flowmill_times, plain_times, differences = [], [], []
        for seed in range(args.images):
            prompt = flowmill.with_seed(seed)  # building the request is the client's work, not timed
            flowmill_seconds, saved = timed(flowmill.run, prompt)
            plain_seconds, plain_pixels = timed(plain.image, seed)
            flowmill_times.append(flowmill_seconds)
            plain_times.append(plain_seconds)
            flowmill_pixels = flowmill.pixels(saved)
            differences.append(int(np.abs(flowmill_pixels.astype(int) - plain_pixels.astype(int)).max()))

    flowmill_median, plain_median = statistics.median(flowmill_times), statistics.median(plain_times)
    print(f"\nprompt {positive!r}, {settings['steps']} {settings['sampler_name']} steps, CFG {settings['cfg']}, 64x64")
    print(f"cold first image (load checkpoint, encode prompts, sample, decode, save): {cold:.2f} s")
    print(f"flowmill (executor + nodes): {flowmill_median * 1000:.1f} ms/image median "
          f"= {1 / flowmill_median:.2f} images/s over {args.images} images")
    print(f"plain loop (same models):    {plain_median * 1000:.1f} ms/image median = {1 / plain_median:.2f} images/s")
    overhead = flowmill_median / plain_median - 1
    print(f"framework overhead: {overhead:+.1%} (target < 5%: {'PASS' if overhead < 0.05 else 'FAIL'})")
    print(f"largest pixel difference between the two: {max(differences)} (of 255)")

    started = time.perf_counter()
    report = evaluate(CHECKPOINT, EvaluationSettings(pairs=args.pairs, wording_scenes=args.wording_scenes))
    print(f"\nquality: {args.pairs} held-out caption/seed pairs, {report['settings']['steps']} euler steps, "
          f"CFG {report['settings']['cfg']} ({time.perf_counter() - started:.0f} s)")
    targets = {"shape": 0.9, "colour": 0.9, "background": 0.9, "size": 0.8, "position": 0.8}
    for name, value in report["accuracy"].items():
        target = targets.get(name)
        verdict = f"  (target {target:.0%}: {'PASS' if value >= target else 'FAIL'})" if target else ""
        print(f"  {name:<24} {value:6.1%}{verdict}")
    print("the same scenes and seeds as short prompts (no size or position), attributes they state:")
    for name, value in report["short_prompt_accuracy"].items():
        print(f"  {name:<24} {value:6.1%}")
    if "wording_accuracy" in report:
        print(f"typed prompts in other wordings ({args.wording_scenes} held-out scenes each, fresh seeds), "
              "shape+colour+background all right (target for held-out wordings: 85%):")
        for name, scores in report["wording_accuracy"].items():
            joint = scores["shape+colour+background"]
            verdict = f"  (target 85%: {'PASS' if joint >= 0.85 else 'FAIL'})" if scores["held_out"] else "  (trained)"
            print(f"  {name:<46} {joint:6.1%}{verdict}")
        pooled = report["held_out_full_captions"]
        print(f"  full captions in held-out wordings, pooled    {pooled:6.1%}  "
              f"(target 90%: {'PASS' if pooled >= 0.9 else 'FAIL'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
