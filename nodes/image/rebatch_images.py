"""RebatchImages: regroup a list of image batches into batches of a chosen size."""

from __future__ import annotations

from typing import Annotated

import torch

from engine.node_api import Int, Socket, node
from nodes.image._pixels import require_image

# With input_is_list=True the executor passes every input as a list (ComfyUI's INPUT_IS_LIST),
# so the annotations say list while the sockets stay IMAGE and INT.
ImageList = Annotated[list[torch.Tensor], Socket("IMAGE")]


@node(id="RebatchImages", category="image/batch", display="Rebatch Images", input_is_list=True, output_is_list=True)
def rebatch_images(
    images: ImageList,
    batch_size: Annotated[list[int], Int(1, min=1, max=4096, tooltip="Images per output batch.")],
) -> ImageList:
    """Split and regroup image batches into a list of batches of batch_size images."""
    size = batch_size[0]
    batches: list[torch.Tensor] = []
    pending: list[torch.Tensor] = []
    for index, batch in enumerate(images):
        require_image("RebatchImages", f"images[{index}]", batch)
        for frame in batch.split(1):
            # Frames of different sizes cannot share a tensor: a size change starts a new batch.
            if len(pending) == size or (pending and frame.shape[1:] != pending[0].shape[1:]):
                batches.append(torch.cat(pending))
                pending = []
            pending.append(frame)
    if pending:
        batches.append(torch.cat(pending))
    return batches
