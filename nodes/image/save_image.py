"""SaveImage: write an IMAGE batch as PNGs, with the workflow embedded, into the output folder."""

from __future__ import annotations

from typing import Annotated

from engine.node_api import Image, Input, NodeContext, NodeOutput, String, node
from nodes.image._writing import write_images


@node(id="SaveImage", category="image", display="Save Image", output=True)
def save_image(
    ctx: NodeContext,
    images: Annotated[Image, Input(tooltip="The images to save.")],
    filename_prefix: Annotated[
        str,
        String(
            "ComfyUI",
            tooltip="File name prefix; may include a subfolder ('renders/cat') and %width%, %height%, %year%, ...",
        ),
    ],
) -> NodeOutput:
    """Save images to the output folder as PNGs carrying the prompt and workflow."""
    written = write_images(
        ctx, "SaveImage", images, root=ctx.folders.output_dir, folder_type="output",
        prefix=filename_prefix, compress_level=4,
    )
    return NodeOutput(ui={"images": written})
