"""RebatchImages: regroup a list of image batches into batches of a chosen size."""

from __future__ import annotations

from typing import Annotated

import torch

from engine.node_api import Int, Socket, TensorEstimate, node
from nodes.image._pixels import is_image_estimate, require_image

# With input_is_list=True the executor passes every input as a list (ComfyUI's INPUT_IS_LIST),
# so the annotations say list while the sockets stay IMAGE and INT.
ImageList = Annotated[list[torch.Tensor], Socket("IMAGE")]


def _estimate(images: TensorEstimate, batch_size: int) -> TensorEstimate | None:
    """The same frames regrouped: ceil(frames / batch_size) batches of batch_size frames."""
    if not is_image_estimate(images):
        return None
    frames = images.items * images.shape[0]
    size = max(1, min(batch_size, frames))
    return TensorEstimate((size, *images.shape[1:]), images.itemsize, items=-(-frames // size))


@node(id="RebatchImages", category="image/batch", display="Rebatch Images", input_is_list=True, output_is_list=True,
      estimate=_estimate)
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
