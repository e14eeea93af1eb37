"""Folder layout and the one path-containment rule.

Every file path that arrives from HTTP or from a graph input (view, upload, LoadImage,
model names) goes through `resolve_under`, which resolves real paths on both sides, so a
symlink planted inside a root cannot lead outside it (ComfyUI #12285). Nothing else in
Flowmill joins a user-supplied name onto a directory.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

# ComfyUI model folder names, plus the legacy aliases it still reads.
MODEL_FOLDERS = (
    "checkpoints",
    "diffusion_models",
    "vae",
    "text_encoders",
    "controlnet",
    "loras",
    "embeddings",
    "upscale_models",
    "clip_vision",
    "style_models",
    "vae_approx",
)
LEGACY_MODEL_FOLDERS = {"unet": "diffusion_models", "clip": "text_encoders"}
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp"})
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafePathError(ValueError):
    """A user-supplied path would leave its root folder, or is malformed."""


def resolve_under(root: Path, user_path: str) -> Path:
    """Return the real path of `user_path` inside `root`, or raise UnsafePathError.

    Rejects NUL bytes, absolute paths, Windows drive letters and UNC forms, then resolves
    symlinks on both sides and requires the result to stay inside the root. The result
    may not exist yet (uploads); callers check existence themselves.
    """
    if not isinstance(user_path, str):
        raise UnsafePathError(f"expected a path string, got {type(user_path).__name__}")
    if "\x00" in user_path:
        raise UnsafePathError("path contains a NUL byte")
    normalised = user_path.replace("\\", "/")
    if normalised.startswith("/") or _WINDOWS_DRIVE.match(normalised):
        raise UnsafePathError(f"absolute paths are not allowed: {user_path!r}")
    real_root = os.path.realpath(root)
    candidate = os.path.realpath(os.path.join(real_root, normalised))
    try:
        inside = os.path.commonpath([real_root, candidate]) == real_root
    except ValueError:
        inside = False
    if not inside:
        raise UnsafePathError(f"path leaves its folder: {user_path!r}")
    return Path(candidate)


def split_annotated_name(name: str, default_type: str = "input") -> tuple[str, str]:
    """Split ComfyUI's annotated file names ("x.png [output]") into (name, folder type)."""
    for folder_type in ("input", "output", "temp"):
        suffix = f" [{folder_type}]"
        if name.endswith(suffix):
            return name[: -len(suffix)], folder_type
    return name, default_type


@dataclass(frozen=True)
class Folders:
    """Where Flowmill reads and writes files. Built once in main.py and passed down."""

    models_dir: Path
    input_dir: Path
    output_dir: Path
    temp_dir: Path
    user_dir: Path

    @classmethod
    def under(cls, base: Path) -> Folders:
        base = Path(base)
        return cls(base / "models", base / "input", base / "output", base / "temp", base / "user")

    def create(self) -> None:
        for folder in (self.input_dir, self.output_dir, self.temp_dir, self.user_dir):
            folder.mkdir(parents=True, exist_ok=True)

    def root_for_type(self, folder_type: str) -> Path:
        """The root for `/view?type=` and `/upload/image` `type` values."""
        roots = {"input": self.input_dir, "output": self.output_dir, "temp": self.temp_dir}
        if folder_type not in roots:
            raise UnsafePathError(f"unknown folder type {folder_type!r}; expected one of {sorted(roots)}")
        return roots[folder_type]

    def model_folder(self, name: str) -> Path:
        folder = LEGACY_MODEL_FOLDERS.get(name, name)
        if folder not in MODEL_FOLDERS:
            raise UnsafePathError(f"unknown model folder {name!r}; expected one of {list(MODEL_FOLDERS)}")
        return self.models_dir / folder

    def list_files(self, root: Path, extensions: frozenset[str] | None = None) -> list[str]:
        """Relative file names under `root`, sorted, with '/' separators; hidden files skipped."""
        if not root.is_dir():
            return []
        names = []
        for path in root.rglob("*"):
            relative = path.relative_to(root)
            if any(part.startswith(".") for part in relative.parts) or not path.is_file():
                continue
            if extensions is None or path.suffix.lower() in extensions:
                names.append(relative.as_posix())
        return sorted(names)

    def list_models(self, name: str) -> list[str]:
        return self.list_files(self.model_folder(name))

    def list_input_images(self) -> list[str]:
        return self.list_files(self.input_dir, IMAGE_EXTENSIONS)

    def choices(self, source: str) -> list[str]:
        """The combo listing for an input's `choice_source`."""
        if source == "input":
            return self.list_input_images()
        return self.list_models(source)

    def resolve_model(self, folder: str, name: str) -> Path:
        return resolve_under(self.model_folder(folder), name)

    def resolve_annotated(self, name: str, default_type: str = "input") -> Path:
        """Resolve "x.png", "sub/x.png" or "x.png [output]" to a real path inside its root."""
        plain, folder_type = split_annotated_name(name, default_type)
        return resolve_under(self.root_for_type(folder_type), plain)
