"""LoadImage: decode an image from the input folder into an IMAGE batch and a MASK."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, NamedTuple

from PIL import Image as PILImage

from engine.media import ALLOWED_FORMATS, open_image_safely, pil_to_tensor
from engine.node_api import Choice, Image, Mask, NodeContext, TensorEstimate, UnsafePathError, node

_HASH_CHUNK = 1024 * 1024


class LoadedImage(NamedTuple):
    IMAGE: Image
    MASK: Mask


def _resolve(ctx: NodeContext, image: object) -> Path | None:
    """The real path of `image` inside its root, or None if it escapes or is not a file."""
    if not isinstance(image, str):
        return None
    try:
        path = ctx.folders.resolve_annotated(image)
    except UnsafePathError:
        return None
    return path if path.is_file() else None


def _fingerprint(ctx: NodeContext, image: str | None = None) -> str | float:
    # Hash the bytes, not the mtime: a file replaced with identical content stays cached.
    path = _resolve(ctx, image)
    if path is None:
        return float("nan")  # linked or missing: never cached; run() reports the real error
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _validate(ctx: NodeContext, image: str | None = None) -> bool | str:
    if image is None:  # a linked input is not passed: nothing to check before it runs
        return True
    return True if _resolve(ctx, image) is not None else f"Invalid image file: {image}"


def _estimate(ctx: NodeContext, image: str) -> tuple[TensorEstimate, TensorEstimate] | None:
    """Every frame of the file, read from its header alone: an animated GIF or WebP decodes
    into one batch, so 6 frames of 4000x4000 take 6 times one frame's memory."""
    path = _resolve(ctx, image)
    if path is None:
        return None
    try:
        with PILImage.open(path, formats=list(ALLOWED_FORMATS)) as picture:
            width, height = picture.size
            # MPO files (stereo JPEGs) contribute their first frame only, as in pil_to_tensor.
            frames = 1 if picture.format == "MPO" else int(getattr(picture, "n_frames", 1))
    except (OSError, SyntaxError, ValueError, PILImage.DecompressionBombError):
        return None  # not an image we can read: running the node reports why
    return TensorEstimate((frames, height, width, 3)), TensorEstimate((frames, height, width))


@node(id="LoadImage", category="image", display="Load Image", fingerprint=_fingerprint, validate=_validate,
      estimate=_estimate)
def load_image(
    ctx: NodeContext,
    image: Annotated[str, Choice(source="input", upload="image", tooltip="A file in the input folder.")],
) -> LoadedImage:
    """Load an image file; the mask is 1 - alpha (zeros when the file has no alpha)."""
    path = _resolve(ctx, image)
    if path is None:
        raise FileNotFoundError(f"LoadImage: Invalid image file: {image}")
    with open_image_safely(path, name=image) as picture:
        pixels, mask = pil_to_tensor(picture, name=image)
    return LoadedImage(pixels, mask)
