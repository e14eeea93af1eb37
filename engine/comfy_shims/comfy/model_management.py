"""`comfy.model_management` stand-in: interrupts and devices, read from the node's context.

ComfyUI keeps the interrupt flag and device choice in module globals; here both come from
`engine.context.CURRENT_NODE_CONTEXT`, so concurrent prompts cannot see each other's state.
`InterruptProcessingException` is Flowmill's own `Interrupted`, so a pack that catches it
also catches interrupts raised by `NodeContext.progress`, and the executor recognises the
exception a pack re-raises. Model loading and memory management are not provided.
"""

from __future__ import annotations

import torch

from engine.context import CURRENT_NODE_CONTEXT, Interrupted

InterruptProcessingException = Interrupted


def processing_interrupted() -> bool:
    """True when the running prompt was interrupted (False outside a node call)."""
    context = CURRENT_NODE_CONTEXT.get()
    return context is not None and context.interrupt.is_set()


def throw_exception_if_processing_interrupted() -> None:
    """Raise InterruptProcessingException if the running prompt was interrupted."""
    context = CURRENT_NODE_CONTEXT.get()
    if context is not None:
        context.check_interrupted()


def get_torch_device() -> torch.device:
    """The device the running node should compute on (CPU outside a node call)."""
    context = CURRENT_NODE_CONTEXT.get()
    return context.device if context is not None else torch.device("cpu")


def intermediate_device() -> torch.device:
    """Where nodes leave IMAGE/MASK outputs between nodes; Flowmill keeps them on the CPU."""
    return torch.device("cpu")


def unet_offload_device() -> torch.device:
    return torch.device("cpu")


def soft_empty_cache(force: bool = False) -> None:
    """Release cached, unused accelerator memory."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
