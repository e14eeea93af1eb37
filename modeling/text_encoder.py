"""The text encoder wrapper: a prompt of any length to hidden states and a pooled vector.

Tokens are split into windows of `max_length - 2`; each window gets CLIP's start and end
tokens, is padded with the end token to `max_length` and encoded alone, and the hidden states
are concatenated (ComfyUI does the same), so long prompts are not cut off. The pooled vector
comes from the first window. Outputs are float32 on the CPU, ComfyUI's place for conditioning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from modeling.families import ModelFamily


@dataclass(frozen=True, eq=False)
class TextEncoder:
    """A tokenizer and the text model it feeds, on `device`."""

    module: nn.Module
    tokenizer: Any
    family: ModelFamily
    device: torch.device
    dtype: torch.dtype

    @property
    def max_length(self) -> int:
        """Tokens per window: the tokenizer's limit, capped by the model's position table."""
        return min(int(self.tokenizer.model_max_length), int(self.module.config.max_position_embeddings))

    def token_windows(self, text: str) -> list[list[int]]:
        """Token ids per window, each with start and end tokens and padded with the end token."""
        start, end = self.tokenizer.bos_token_id, self.tokenizer.eos_token_id
        ids = self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        size = self.max_length - 2
        chunks = [ids[offset:offset + size] for offset in range(0, len(ids), size)] or [[]]
        return [[start, *chunk, end] + [end] * (size - len(chunk)) for chunk in chunks]

    @torch.no_grad()
    def encode(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden states [1, windows * max_length, D], pooled [1, D]) for `text`."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a string, got {type(text).__name__}")
        ids = torch.tensor(self.token_windows(text), device=self.device)
        output = self.module(input_ids=ids)
        hidden = output.last_hidden_state.float().reshape(1, -1, output.last_hidden_state.shape[-1])
        return hidden.cpu(), output.pooler_output[:1].float().cpu()

    def conditioning(self, text: str) -> list[list[Any]]:
        """ComfyUI's CONDITIONING for `text`: `[[hidden, {"pooled_output": pooled}]]`."""
        hidden, pooled = self.encode(text)
        return [[hidden, {"pooled_output": pooled}]]
