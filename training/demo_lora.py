"""Trains the demo LoRA: a new shape word, "diamond", for the shipped demo model, as a LoRA file Flowmill loads.

The demo model has never seen a diamond (`shapes.vocabulary.EXTENSION_SHAPES`): its captions never say
the word, so the token's embedding is untrained, and its transformer has never drawn one. The LoRA
teaches both, with everything of the base model frozen:

- transformer: low-rank factors (rank `rank`, scale alpha / rank) beside every attention and MLP linear
  of the double and single blocks, `W x + (alpha / rank) up(down(x))`;
- text encoder: the "diamond" token's embedding row, as a rank-1 LoRA on the token embedding (`down`
  is the learnt change of that row, `up` a one-hot column picking the row). Every other token's
  embedding, and so every base prompt's encoding, stays exactly as it was.

The data mixes diamond scenes (training split, every colour pair, size and position, rendered by the
shapes world and encoded by the demo VAE) with ordinary scenes, so the base world does not regress;
captions come from the base grammar with a third of them partial, as in the short-prompt stage that
produced the shipped weights. The loss is `FlowTrainer.loss` (rectified flow, logit-normal shifted t,
10% empty captions for CFG). The file is written in the PEFT/diffusers layout
(`transformer.<name>.lora_A.weight`, `.lora_B.weight`, `.alpha`; `text_encoder.text_model.<name>...`)
with a header saying what it is.

Run: `python -m training.demo_lora --checkpoint models/checkpoints/flowmill-shapes-demo
--out models/loras/flowmill-shapes-diamond.safetensors` (see training/README.md, "The demo LoRA").
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import FluxTransformer2DModel
from safetensors.torch import save_file
from torch import nn
from tqdm import tqdm
from transformers import CLIPTextModel, CLIPTokenizerFast

from modeling.loading import load_vae
from training.flow_model import FlowTrainer, FlowTraining, encode_images, tokenize_wordings, warmup_cosine
from training.shapes import Scene, make_dataset, render, sample_scene, split_of
from training.shapes.dataset import Split
from training.shapes.scene import ExtendedScene

NEW_SHAPE = "diamond"
# The linears a LoRA changes (names end with these): attention projections and MLPs of both block kinds,
# and the blocks' modulations (which the pooled text steers). Without the modulations, 600 steps drew
# shapes halfway between a diamond and a cross (diamond read back 54%).
TARGET_SUFFIXES: tuple[str, ...] = (
    "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
    "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out",
    "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2",
    "proj_mlp", "proj_out", "norm1.linear", "norm1_context.linear", "norm.linear",
)  # fmt: skip
# The token embedding's parameter, as LoRA files for CLIP spell it (Flowmill also reads it without "text_model.").
TOKEN_EMBEDDING = "text_model.embeddings.token_embedding"


@dataclass(frozen=True)
class LoraTraining:
    steps: int = 1500
    batch_size: int = 32
    learning_rate: float = 2e-3
    embedding_learning_rate: float = 5e-3
    warmup_steps: int = 50
    rank: int = 8
    alpha: float = 8.0
    new_shape_scenes: int = 3000  # diamond scenes of the training split, encoded once
    base_scenes: int = 3000  # ordinary scenes, so the base world is rehearsed
    new_shape_share: float = 0.5  # of each batch
    wordings: int = 4
    partial_captions: float = 0.35
    threads: int = 1
    seed: int = 0


class LoraLinear(nn.Module):
    """`base(x) + scale * up(down(x))` with `base` frozen; `up` starts at zero, so training starts at the base model."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, generator: torch.Generator) -> None:
        super().__init__()
        self.base, self.scale = base, alpha / rank
        self.down = nn.Parameter(torch.randn(rank, base.in_features, generator=generator) / base.in_features**0.5)
        self.up = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * (x @ self.down.T) @ self.up.T


def add_lora_layers(transformer: nn.Module, rank: int, alpha: float,
                    generator: torch.Generator) -> dict[str, LoraLinear]:
    """Wrap every target linear of `transformer` in a `LoraLinear`, in place; {module name: wrapper}."""
    targets = [(name, module) for name, module in transformer.named_modules()
               if isinstance(module, nn.Linear) and name.endswith(TARGET_SUFFIXES)]
    if not targets:
        raise ValueError(f"no linear of the transformer ends with any of {TARGET_SUFFIXES}")
    wrapped = {}
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        wrapper = LoraLinear(module, rank, alpha, generator)
        setattr(transformer.get_submodule(parent_name) if parent_name else transformer, child, wrapper)
        wrapped[name] = wrapper
    return wrapped


class TokenEmbeddingChange(nn.Module):
    """A learnt change of one token's embedding row, added where that token appears (a forward hook on the
    embedding): the same as adding it to the row of the weight, which is what the saved LoRA does."""

    def __init__(self, embedding: nn.Embedding, token_id: int) -> None:
        super().__init__()
        self.token_id = token_id
        self.delta = nn.Parameter(torch.zeros(embedding.embedding_dim))
        embedding.register_forward_hook(self._add)

    def _add(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        return output + (inputs[0] == self.token_id).unsqueeze(-1).to(output.dtype) * self.delta


class LoraTrainer(FlowTrainer):
    """`FlowTrainer`'s loss over frozen base models; only the LoRA factors and the embedding change learn."""

    def __init__(self, text_encoder: CLIPTextModel, transformer: nn.Module, flow: FlowTraining, settings: LoraTraining,
                 empty_ids: torch.Tensor, lora: dict[str, LoraLinear], embedding: TokenEmbeddingChange) -> None:
        # FlowTrainer's own optimiser and moving averages are over whole models; a LoRA needs neither.
        self.text_encoder, self.transformer, self.settings, self.empty_ids = text_encoder, transformer, flow, empty_ids
        self.lora_settings = settings
        self.factors = [p for layer in lora.values() for p in (layer.down, layer.up)]
        self.parameters = [*self.factors, embedding.delta]
        self.optimizer = torch.optim.AdamW([
            {"params": self.factors, "lr": settings.learning_rate, "peak": settings.learning_rate},
            {"params": [embedding.delta], "lr": settings.embedding_learning_rate,
             "peak": settings.embedding_learning_rate},
        ], weight_decay=0.0, betas=(0.9, 0.99))

    def step(self, step: int, latents: torch.Tensor, token_ids: torch.Tensor, generator: torch.Generator) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = warmup_cosine(group["peak"], self.lora_settings.warmup_steps, self.lora_settings.steps, step)
        loss = self.loss(latents, token_ids, generator)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.parameters, 1.0)
        self.optimizer.step()
        return loss.item()


def new_shape_scenes(n: int, seed: int, split: Split) -> list[ExtendedScene]:
    """`n` seeded scenes of the new shape in `split` (held-out attribute combinations stay apart, as in the
    base world): a base scene's colours, size, position and jitter with a diamond instead of its shape."""
    rng = np.random.default_rng(seed)
    scenes: list[ExtendedScene] = []
    while len(scenes) < n:
        base = sample_scene(rng)
        scene = ExtendedScene(NEW_SHAPE, base.colour, base.background, base.size, base.position, base.jitter)
        if split_of(scene) == split:
            scenes.append(scene)
    return scenes


def render_all(scenes: list[Scene]) -> np.ndarray:
    return np.stack([render(scene) for scene in scenes])


def lora_state(lora: dict[str, LoraLinear], embedding: TokenEmbeddingChange, vocabulary: int,
               alpha: float) -> dict[str, torch.Tensor]:
    """The trained factors in the PEFT/diffusers layout Flowmill's LoRA loader reads (float32)."""
    state: dict[str, torch.Tensor] = {}
    for name, layer in lora.items():
        key = f"transformer.{name}"
        state[f"{key}.lora_A.weight"] = layer.down.detach().clone().contiguous()
        state[f"{key}.lora_B.weight"] = layer.up.detach().clone().contiguous()
        state[f"{key}.alpha"] = torch.tensor(alpha)
    pick = torch.zeros(vocabulary, 1)
    pick[embedding.token_id, 0] = 1.0
    key = f"text_encoder.{TOKEN_EMBEDDING}"
    state[f"{key}.lora_A.weight"] = embedding.delta.detach().clone().reshape(1, -1).contiguous()
    state[f"{key}.lora_B.weight"] = pick
    state[f"{key}.alpha"] = torch.tensor(1.0)  # rank 1: scale 1
    return state


def train(settings: LoraTraining, checkpoint: Path, out: Path) -> dict:
    """Train the LoRA on the demo model in `checkpoint` and write it to `out` (a .safetensors file); a report."""
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    tokenizer = CLIPTokenizerFast.from_pretrained(str(checkpoint / "tokenizer"))
    token_ids_of_word = tokenizer(NEW_SHAPE, add_special_tokens=False).input_ids
    if len(token_ids_of_word) != 1:
        raise ValueError(f"{NEW_SHAPE!r} must be one CLIP token to be taught as one embedding row; "
                         f"it is {token_ids_of_word}")

    started = time.perf_counter()
    vae = load_vae(checkpoint / "vae", device="cpu")
    new_scenes = new_shape_scenes(settings.new_shape_scenes, seed=settings.seed + 20, split="train")
    base_images, _, base_scenes = make_dataset(settings.base_scenes, seed=settings.seed + 21, split="train")
    with torch.no_grad():
        new_latents = encode_images(vae, render_all(new_scenes))
        base_latents = encode_images(vae, base_images)
    new_ids = tokenize_wordings(tokenizer, new_scenes, settings.wordings, seed=settings.seed + 22,
                                partial_captions=settings.partial_captions)
    base_ids = tokenize_wordings(tokenizer, base_scenes, settings.wordings, seed=settings.seed + 23,
                                 partial_captions=settings.partial_captions)
    empty_ids = tokenizer("", padding="max_length", max_length=tokenizer.model_max_length,
                          return_tensors="pt").input_ids[0]
    prepared_seconds = time.perf_counter() - started

    # The shipped weights are fp16 on disk; train against their float32 values, as the app computes on a CPU.
    text_encoder = CLIPTextModel.from_pretrained(checkpoint / "text_encoder", torch_dtype=torch.float32)
    transformer = FluxTransformer2DModel.from_pretrained(checkpoint / "transformer", torch_dtype=torch.float32)
    text_encoder.requires_grad_(False)
    transformer.requires_grad_(False)
    lora = add_lora_layers(transformer, settings.rank, settings.alpha, generator)
    embedding = TokenEmbeddingChange(text_encoder.get_input_embeddings(), token_ids_of_word[0])
    flow = FlowTraining(steps=settings.steps, batch_size=settings.batch_size, seed=settings.seed)
    trainer = LoraTrainer(text_encoder, transformer, flow, settings, empty_ids, lora, embedding)

    new_count = round(settings.batch_size * settings.new_shape_share)
    losses = []
    started = time.perf_counter()
    for step in tqdm(range(settings.steps), desc="lora", unit="step"):
        new_rows = torch.randint(0, len(new_scenes), (new_count,), generator=generator)
        base_rows = torch.randint(0, len(base_scenes), (settings.batch_size - new_count,), generator=generator)
        wording = torch.randint(0, settings.wordings, (settings.batch_size,), generator=generator)
        latents = torch.cat([new_latents[new_rows], base_latents[base_rows]])
        ids = torch.cat([new_ids[new_rows, wording[:new_count]], base_ids[base_rows, wording[new_count:]]])
        losses.append(trainer.step(step, latents, ids, generator))
    trained_seconds = time.perf_counter() - started

    state = lora_state(lora, embedding, text_encoder.get_input_embeddings().num_embeddings, settings.alpha)
    report = {
        "teaches": f"the shape word {NEW_SHAPE!r} (a square on its corner), which the demo model has never seen",
        "base_model": checkpoint.name,
        "training": asdict(settings),
        "prepare_seconds": round(prepared_seconds, 1),
        "train_seconds": round(trained_seconds, 1),
        "final_loss": round(float(np.mean(losses[-50:])), 5),
        "parameters": sum(value.numel() for key, value in state.items() if not key.endswith(".alpha")),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out), metadata={"format": "pt", "flowmill.lora": json.dumps(report)})
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("models/checkpoints/flowmill-shapes-demo"),
                        help="the demo checkpoint folder the LoRA is for")
    parser.add_argument("--out", type=Path, required=True, help="the .safetensors file to write")
    parser.add_argument("--steps", type=int, default=LoraTraining.steps)
    parser.add_argument("--scenes", type=int, default=LoraTraining.new_shape_scenes,
                        help="diamond scenes and ordinary scenes, each")
    parser.add_argument("--threads", type=int, default=LoraTraining.threads)
    parser.add_argument("--seed", type=int, default=LoraTraining.seed)
    args = parser.parse_args(argv)
    settings = LoraTraining(steps=args.steps, new_shape_scenes=args.scenes, base_scenes=args.scenes,
                            threads=args.threads, seed=args.seed)
    print(json.dumps(train(settings, args.checkpoint, args.out), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
