"""PreviewImage: write an IMAGE batch to the temp folder so the canvas can show it."""

from __future__ import annotations

import secrets
import string
from typing import Annotated

from engine.node_api import Image, Input, NodeContext, NodeOutput, node
from nodes.image._writing import write_images


def _temp_prefix() -> str:
    # ComfyUI's "ComfyUI_temp_xxxxx": a random part keeps concurrent previews from colliding.
    return "ComfyUI_temp_" + "".join(secrets.choice(string.ascii_lowercase) for _ in range(5))


@node(id="PreviewImage", category="image", display="Preview Image", output=True)
def preview_image(ctx: NodeContext, images: Annotated[Image, Input(tooltip="The images to show.")]) -> NodeOutput:
    """Show images on the canvas without keeping them (written to the temp folder)."""
    # Low compression: previews are short-lived, so encoding speed matters more than size.
    written = write_images(
        ctx, "PreviewImage", images, root=ctx.folders.temp_dir, folder_type="temp",
        prefix=_temp_prefix(), compress_level=1,
    )
    return NodeOutput(ui={"images": written})
