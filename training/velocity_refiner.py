"""Trains a FlowTurbo velocity refiner (modeling/velocity_refiner.py) for a demo checkpoint.

Objective (FlowTurbo's refiner loss, arXiv:2409.18128, in the FLUX convention of
reference/techniques.md section 0): draw a data latent x0 (an encoded training-split shapes image with
one of its captions, or the empty caption 10% of the time), `sigma ~ U(0, 1)` and noise, and set
`x_s = (1 - sigma) x0 + sigma noise`. The teacher is the checkpoint's CFG-guided velocity
`V = uncond + s (cond - uncond)` with the scale s drawn per sample from U(1, 6), so one refiner serves any
CFG (the negative is the empty prompt; cond and uncond run as one batch). With `v = V(x_s, sigma)`,
`dt ~ U(0, 0.12)` clipped so that `sigma' = sigma - dt >= 0`, and the Euler step `x' = x_s - dt v`,
the student `r(x', sigma', v) + v` learns the target `V(x', sigma')` by mean squared error.

The teacher is the only expensive part, so its states are drawn once before training (a pool of
(x', sigma', v, V(x', sigma')) tuples) and the refiner trains on them for many epochs; the latents
and captions are encoded once too. Validation uses held-out states: eval-split scenes (attribute
combinations never trained on) at CFG 4, refiner versus "reuse v" (offset 0).

Run: `python -m training.velocity_refiner --checkpoint models/checkpoints/flowmill-shapes-demo
--out models/velocity_refiners/flowmill-shapes-demo-refiner.safetensors` (see training/README.md).
Beside the weights it writes `<stem>.report.json` and `<stem>.training_log.jsonl`.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from modeling.conditioning import FluxConditioning
from modeling.diffusion_model import DiffusionModel
from modeling.loading import load_checkpoint
from modeling.text_encoder import TextEncoder
from modeling.vae import Vae
from modeling.velocity_refiner import RefinerConfig, VelocityRefinerNet, parameter_count, save_refiner
from training.flow_model import describe, encode_images, warmup_cosine
from training.shapes import make_dataset

SIGMA_BUCKETS = ((0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))
TEACHER_BATCH = 64  # states per teacher call (x2 for cond + uncond); the fastest size on 2 CPU cores


@dataclass(frozen=True)
class RefinerTraining:
    steps: int = 6000
    batch_size: int = 256
    # FlowTurbo trains a 30M-parameter block with lr 5e-5 at batch 18 for hours. This net is ~100x smaller
    # and gets a few minutes: with warm-up and cosine decay, 4,000 steps on 16k states reached validation
    # ratios 0.29 (3e-4), 0.27 (1e-3) and 0.28 (2e-3, which overfits the pool more). No weight decay, as
    # FlowTurbo: the pool, not the weights' size, limits generalisation here.
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    # The refiner: one DiT block, ~5% of the demo transformer's parameters (FlowTurbo's is ~5% of SiT-XL).
    patch_size: int = 2
    hidden_size: int = 96
    heads: int = 4
    mlp_ratio: float = 4.0
    # Data and teacher states.
    images: int = 4096  # training-split scenes, encoded once
    # A third of the captions leave out size and/or position, as the demo model's fine-tuning mix does,
    # so the refiner sees the velocity fields of the short prompts people type as well.
    partial_captions: float = 0.35
    caption_dropout: float = 0.1
    cfg_low: float = 1.0
    cfg_high: float = 6.0
    max_dt: float = 0.12
    # Drawn once before training; the teacher's cost is most of the run (~8 ms per state on 2 cores).
    # 64k states beat 32k on validation (ratio 0.185 vs 0.194) and on FlowTurbo samples.
    teacher_states: int = 65536
    # Validation: held-out scenes and noise at CFG 4.
    validation_images: int = 512
    validation_states: int = 1024
    validation_cfg: float = 4.0
    validation_every: int = 500
    seed: int = 0

    def refiner_config(self, latent_channels: int) -> RefinerConfig:
        return RefinerConfig(latent_channels, self.patch_size, self.hidden_size, self.heads, self.mlp_ratio)


@dataclass(frozen=True)
class StateDistribution:
    """How teacher states are drawn (sigma is always U(0, 1)): CFG scale range, caption dropout, largest step."""

    cfg: tuple[float, float]
    caption_dropout: float
    max_dt: float


@dataclass(frozen=True, eq=False)
class States:
    """Refiner inputs and targets: x' [N, C, H, W], sigma' [N], v = V(x_s, sigma) and target = V(x', sigma')."""

    x: torch.Tensor
    sigma: torch.Tensor
    velocity: torch.Tensor
    target: torch.Tensor

    def __len__(self) -> int:
        return len(self.sigma)

    def take(self, rows: torch.Tensor) -> States:
        return States(self.x[rows], self.sigma[rows], self.velocity[rows], self.target[rows])


@dataclass(frozen=True, eq=False)
class Teacher:
    """A diffusion model's CFG-guided velocity over a fixed set of encoded scenes."""

    model: DiffusionModel
    latents: torch.Tensor  # [N, C, H, W] data latents
    context: torch.Tensor  # [N, L, D] one caption per scene
    pooled: torch.Tensor  # [N, P]
    empty_context: torch.Tensor  # [1, L, D] the negative (and dropped) prompt
    empty_pooled: torch.Tensor  # [1, P]

    def guided(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor, pooled: torch.Tensor,
               scale: torch.Tensor) -> torch.Tensor:
        """`uncond + scale (cond - uncond)`, cond and uncond in one doubled batch."""
        both = self.model.velocity(torch.cat([x, x]), torch.cat([sigma, sigma]), FluxConditioning(
            torch.cat([context, self.empty_context.expand_as(context)]),
            torch.cat([pooled, self.empty_pooled.expand_as(pooled)])))
        cond, uncond = both.chunk(2)
        return uncond + scale.view(-1, 1, 1, 1) * (cond - uncond)

    @torch.no_grad()
    def draw(self, count: int, within: StateDistribution, generator: torch.Generator) -> States:
        """`count` states of the refiner objective (module docstring), TEACHER_BATCH at a time."""
        parts = []
        for start in range(0, count, TEACHER_BATCH):
            batch = min(TEACHER_BATCH, count - start)
            rows = torch.randint(0, len(self.latents), (batch,), generator=generator)
            dropped = (torch.rand(batch, generator=generator) < within.caption_dropout)
            context = torch.where(dropped[:, None, None], self.empty_context, self.context[rows])
            pooled = torch.where(dropped[:, None], self.empty_pooled, self.pooled[rows])
            sigma = torch.rand(batch, generator=generator)
            scale = within.cfg[0] + (within.cfg[1] - within.cfg[0]) * torch.rand(batch, generator=generator)
            data = self.latents[rows]
            noise = torch.randn(data.shape, generator=generator)
            x = (1 - sigma.view(-1, 1, 1, 1)) * data + sigma.view(-1, 1, 1, 1) * noise
            velocity = self.guided(x, sigma, context, pooled, scale)
            dt = torch.minimum(within.max_dt * torch.rand(batch, generator=generator), sigma)
            x_next, sigma_next = x - dt.view(-1, 1, 1, 1) * velocity, sigma - dt
            target = self.guided(x_next, sigma_next, context, pooled, scale)
            parts.append(States(x_next, sigma_next, velocity, target))
        return States(*(torch.cat([getattr(part, name) for part in parts]) for name in ("x", "sigma", "velocity",
                                                                                           "target")))


def encode_captions(text_encoder: TextEncoder, captions: list[str]) -> tuple[torch.Tensor, ...]:
    """(context [N, L, D], pooled [N, P], empty context [1, L, D], empty pooled [1, P]), each text encoded once.

    To batch, a caption spanning fewer text windows than the longest gets empty-prompt windows
    (start, end and padding tokens) appended; the demo's captions all fit one window, so none are padded.
    """
    encoded = {text: text_encoder.encode(text) for text in dict.fromkeys([*captions, ""])}
    empty = encoded[""][0]
    length = max(hidden.shape[1] for hidden, _ in encoded.values())

    def padded(hidden: torch.Tensor) -> torch.Tensor:
        return torch.cat([hidden, empty.repeat(1, (length - hidden.shape[1]) // empty.shape[1], 1)], dim=1)

    context = torch.cat([padded(encoded[text][0]) for text in captions])
    pooled = torch.cat([encoded[text][1] for text in captions])
    return context, pooled, padded(empty), encoded[""][1]


def build_teacher(model: DiffusionModel, text_encoder: TextEncoder, vae: Vae, images: int, split: str, seed: int,
                  partial_captions: float) -> Teacher:
    """Encoded `split` scenes (latents as the samplers see them) and their captions, with the empty prompt."""
    pixels, _, scenes = make_dataset(images, seed=seed, split=split)
    rng = np.random.default_rng(seed + 1)
    captions = [describe(scene, rng, partial_captions) for scene in scenes]
    return Teacher(model, encode_images(vae, pixels), *encode_captions(text_encoder, captions))


def refiner_loss(net: VelocityRefinerNet, states: States) -> torch.Tensor:
    """MSE between the student `r(x', sigma', v) + v` and the target `V(x', sigma')`."""
    return torch.nn.functional.mse_loss(net(states.x, states.sigma, states.velocity) + states.velocity,
                                        states.target)


@torch.no_grad()
def validate(net: VelocityRefinerNet, states: States) -> dict:
    """Refiner and reuse-v (offset 0) MSE, overall and per bucket of the refiner's sigma."""
    refined = torch.cat([net(part.x, part.sigma, part.velocity) + part.velocity
                         for part in (states.take(rows) for rows in torch.arange(len(states)).split(512))])
    refiner_error = (refined - states.target).pow(2).flatten(1).mean(1)
    reuse_error = (states.velocity - states.target).pow(2).flatten(1).mean(1)

    def figures(mask: torch.Tensor) -> dict:
        if not mask.any():
            return {"states": 0, "refiner_mse": None, "reuse_v_mse": None, "ratio": None}
        refiner, reuse = refiner_error[mask].mean().item(), reuse_error[mask].mean().item()
        return {"states": int(mask.sum()), "refiner_mse": round(refiner, 6), "reuse_v_mse": round(reuse, 6),
                "ratio": round(refiner / reuse, 4)}

    buckets = {f"[{low}, {high}{']' if high == 1.0 else ')'}": figures(
        (states.sigma >= low) & ((states.sigma <= high) if high == 1.0 else (states.sigma < high)))
        for low, high in SIGMA_BUCKETS}
    return {"overall": figures(torch.ones_like(refiner_error, dtype=torch.bool)), "buckets": buckets}


def learning_rate(settings: RefinerTraining, step: int) -> float:
    return warmup_cosine(settings.learning_rate, settings.warmup_steps, settings.steps, step)


def fit(net: VelocityRefinerNet, pool: States, validation: States, settings: RefinerTraining,
        log_file: Path) -> VelocityRefinerNet:
    """AdamW on batches drawn from `pool`; returns the exponential moving average of the weights."""
    generator = torch.Generator().manual_seed(settings.seed + 3)
    optimizer = torch.optim.AdamW(net.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    ema = copy.deepcopy(net).requires_grad_(False)
    parameters, ema_parameters = list(net.parameters()), list(ema.parameters())
    started = time.perf_counter()
    with log_file.open("w") as log, tqdm(total=settings.steps, desc="refiner", unit="step") as bar:
        for step in range(settings.steps):
            rate = learning_rate(settings, step)
            for group in optimizer.param_groups:
                group["lr"] = rate
            batch = pool.take(torch.randint(0, len(pool), (settings.batch_size,), generator=generator))
            loss = refiner_loss(net, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            decay = min(settings.ema_decay, (1 + step) / (10 + step))  # a short average early on
            with torch.no_grad():
                torch._foreach_lerp_(ema_parameters, [p.detach() for p in parameters], 1 - decay)
            loss_value = loss.item()
            record: dict = {"step": step, "loss": round(loss_value, 6), "lr": round(rate, 7),
                            "seconds": round(time.perf_counter() - started, 1)}
            if (step + 1) % settings.validation_every == 0 or step + 1 == settings.steps:
                record["validation_ema"] = validate(ema, validation)["overall"]
            if step % 10 == 0 or "validation_ema" in record:
                log.write(json.dumps(record) + "\n")
            bar.set_postfix(loss=f"{loss_value:.4f}")
            bar.update()
    return ema


def train(settings: RefinerTraining, checkpoint: Path, out: Path) -> dict:
    """Train a refiner for the checkpoint folder, save its EMA weights to `out` and the report beside it."""
    torch.manual_seed(settings.seed)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    model, text_encoder, vae = load_checkpoint(checkpoint, device="cpu")
    teacher = build_teacher(model, text_encoder, vae, settings.images, "train", settings.seed + 10,
                            settings.partial_captions)
    held_out = build_teacher(model, text_encoder, vae, settings.validation_images, "eval", settings.seed + 20,
                             settings.partial_captions)
    timings["encode_seconds"] = round(time.perf_counter() - started, 1)

    started = time.perf_counter()
    training_states = StateDistribution((settings.cfg_low, settings.cfg_high), settings.caption_dropout,
                                        settings.max_dt)
    pool = teacher.draw(settings.teacher_states, training_states, torch.Generator().manual_seed(settings.seed + 1))
    at_validation_cfg = StateDistribution((settings.validation_cfg,) * 2, 0.0, settings.max_dt)
    validation = held_out.draw(settings.validation_states, at_validation_cfg,
                               torch.Generator().manual_seed(settings.seed + 2))
    timings["teacher_seconds"] = round(time.perf_counter() - started, 1)

    net = VelocityRefinerNet(settings.refiner_config(model.latent_channels))
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    ema = fit(net, pool, validation, settings, out.with_name(f"{out.stem}.training_log.jsonl"))
    timings["train_seconds"] = round(time.perf_counter() - started, 1)
    timings["total_seconds"] = round(sum(timings.values()), 1)

    save_refiner(out, ema, {"base_model": checkpoint.name, "trained_by": "training/velocity_refiner.py",
                            "method": "FlowTurbo velocity refiner (arXiv:2409.18128)"})
    report = {
        "checkpoint": checkpoint.name,
        "training": asdict(settings),
        "refiner": asdict(net.config),
        "parameters": {"refiner": parameter_count(net), "demo_transformer": parameter_count(model.module),
                       "share": round(parameter_count(net) / parameter_count(model.module), 4)},
        "timings": timings,
        "validation": {"cfg": settings.validation_cfg, "split": "eval", **validate(ema, validation)},
    }
    out.with_name(f"{out.stem}.report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a demo checkpoint folder (diffusers layout)")
    parser.add_argument("--out", type=Path, required=True, help="the .safetensors file to write")
    parser.add_argument("--steps", type=int, default=RefinerTraining.steps)
    parser.add_argument("--seed", type=int, default=RefinerTraining.seed)
    args = parser.parse_args(argv)
    settings = replace(RefinerTraining(), steps=args.steps, seed=args.seed)
    print(json.dumps(train(settings, args.checkpoint, args.out), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
