"""Folder layout and the one path-containment rule.

Every file path that arrives from HTTP or from a graph input (view, upload, LoadImage,
model names) goes through `resolve_under`, which resolves real paths on both sides, so a
symlink planted inside a root cannot lead outside it (ComfyUI #12285). Nothing else in
Flowmill joins a user-supplied name onto a directory. The payload corpus that pins this
down lives in tests/unit/test_path_traversal.py.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
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
    "velocity_refiners",  # Flowmill's own: FlowTurbo velocity refiners (modeling/velocity_refiner.py)
)
LEGACY_MODEL_FOLDERS = {"unet": "diffusion_models", "clip": "text_encoders"}
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp"})
# Weights Flowmill loads: safetensors only (pickle formats can run code when opened).
MODEL_EXTENSIONS = frozenset({".safetensors", ".sft"})
# A folder holding a whole model in diffusers layout; listed and loaded as one entry.
MODEL_FOLDER_MARKER = "model_index.json"
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")
_ON_WINDOWS = os.name == "nt"
# Longest name accepted; PATH_MAX on Linux. Longer strings are attacks or mistakes.
_MAX_PATH_CHARS = 4096
# NAME_MAX on Linux, macOS and Windows: a longer component fails in the OS call with
# ENAMETOOLONG, which callers would not expect (a 500 instead of a 400).
MAX_COMPONENT_BYTES = 255
# Folders deeper than this are not a layout anyone uses; a 1,500-deep upload subfolder is an attack.
MAX_PATH_DEPTH = 64
# Device names Windows resolves in every folder ("input/CON.png" opens the console). Refused on
# every platform so a workflow that works on Linux behaves the same on Windows.
_WINDOWS_DEVICE_NAMES = frozenset(
    {"con", "prn", "aux", "nul", "conin$", "conout$"}
    | {f"{kind}{digit}" for kind in ("com", "lpt") for digit in "0123456789\u00b9\u00b2\u00b3"}
)
_SEPARATORS = re.compile(r"[/\\]")


class UnsafePathError(ValueError):
    """A user-supplied path is malformed, or (as PathEscapeError) would leave its root folder."""


class PathEscapeError(UnsafePathError):
    """A well-formed path that would leave its root folder: through "..", a symlink or a loop.

    A subclass so callers that only care about "unsafe" keep catching UnsafePathError, while
    the server can answer 403 (forbidden place) here and 400 (bad request) for the rest.
    """


def resolve_under(root: Path, user_path: str) -> Path:
    """Return the real path of `user_path` inside `root`, or raise UnsafePathError.

    PathEscapeError (a subclass) means the name was well formed but would leave the root.

    Rejects NUL and control characters, absolute paths, Windows drive letters and UNC forms,
    names Windows would silently rewrite, and characters that Unicode compatibility folding
    turns into path syntax; then resolves symlinks on both sides and requires the result to
    stay inside the root. The result may not exist yet (uploads); callers check existence.
    An empty or "." path resolves to the root itself (a "subfolder" of "").
    """
    if not isinstance(user_path, str):
        raise UnsafePathError(f"expected a path string, got {type(user_path).__name__}")
    _check_characters(user_path)
    normalised = user_path.replace("\\", "/")
    if normalised.startswith("/") or _WINDOWS_DRIVE.match(normalised):
        raise UnsafePathError(f"absolute paths are not allowed: {user_path!r}")
    _check_components(normalised, user_path)
    real_root = os.path.realpath(root)
    candidate = os.path.realpath(os.path.join(real_root, normalised))
    if len(os.fsencode(candidate)) >= _MAX_PATH_CHARS:
        raise UnsafePathError(f"path is too long for the file system once inside its folder: {_shorten(user_path)}")
    try:
        inside = os.path.commonpath([real_root, candidate]) == real_root
    except ValueError:  # different drives on Windows
        inside = False
    if not inside:
        raise PathEscapeError(f"path leaves its folder: {user_path!r}")
    _check_fully_resolved(real_root, candidate, user_path)
    return Path(candidate)


def _check_characters(user_path: str) -> None:
    """Refuse characters that no legitimate file name needs and that change meaning downstream."""
    if "\x00" in user_path:
        raise UnsafePathError("path contains a NUL byte")
    if len(user_path) > _MAX_PATH_CHARS:
        raise UnsafePathError(f"path is longer than {_MAX_PATH_CHARS} characters")
    if any(ord(char) < 0x20 or char == "\x7f" for char in user_path):
        # CR/LF in a name ends up in headers and log lines (header and log injection).
        raise UnsafePathError(f"path contains a control character: {user_path!r}")
    try:
        os.fsencode(user_path)
    except UnicodeEncodeError:
        # Lone surrogates cannot name a file; without this the OS call fails with a
        # UnicodeEncodeError the callers do not expect.
        raise UnsafePathError(f"path is not valid text for this file system: {user_path!r}") from None
    if _ON_WINDOWS and ":" in user_path:
        # "x.png:stream" opens an NTFS alternate data stream.
        raise UnsafePathError(f"':' is not allowed in paths on Windows: {user_path!r}")
    _check_compatibility_folding(user_path)


def _check_compatibility_folding(user_path: str) -> None:
    """Refuse characters that NFKC folds into '/', '\\', ':' or a dots-only component.

    Fullwidth dots and slashes ("．．／") are plain characters to POSIX, but Windows "best fit"
    code-page conversion and any later NFKC normalisation turn them into "../".
    """
    folded = unicodedata.normalize("NFKC", user_path)
    if folded == user_path:
        return
    if any(folded.count(char) != user_path.count(char) for char in "/\\:"):
        raise UnsafePathError(f"path contains characters that fold into path separators: {user_path!r}")
    for raw, fold in zip(_SEPARATORS.split(user_path), _SEPARATORS.split(folded), strict=True):
        if raw != fold and fold and set(fold) <= {".", " "}:
            raise UnsafePathError(f"path contains characters that fold into '..': {user_path!r}")


def _check_components(normalised: str, user_path: str) -> None:
    """Refuse too many or too long components, and names Windows would silently rewrite."""
    parts = normalised.split("/")
    if len(parts) > MAX_PATH_DEPTH:
        raise UnsafePathError(f"path has {len(parts)} components; at most {MAX_PATH_DEPTH} folders deep are allowed")
    for part in parts:
        if len(os.fsencode(part)) > MAX_COMPONENT_BYTES:
            raise UnsafePathError(
                f"path component {_shorten(part)} is {len(os.fsencode(part))} bytes; file and folder names "
                f"are limited to {MAX_COMPONENT_BYTES} bytes")
        if part in ("", ".", ".."):
            continue  # resolved (and contained) by realpath below
        if part[-1] in ". ":
            # Windows strips trailing dots and spaces: "x.py." is written as "x.py", and
            # ".. " or "...." would walk upwards.
            raise UnsafePathError(f"path component {part!r} ends with a dot or a space: {user_path!r}")
        if part.split(".", 1)[0].rstrip(" ").lower() in _WINDOWS_DEVICE_NAMES:
            raise UnsafePathError(f"path component {part!r} is a reserved Windows device name: {user_path!r}")


def _shorten(text: str, keep: int = 40) -> str:
    """A long user string for an error message: its start, its end and its length."""
    return repr(text) if len(text) <= 2 * keep else f"{text[:keep]!r}...{text[-keep:]!r} ({len(text)} characters)"


def _check_fully_resolved(real_root: str, candidate: str, user_path: str) -> None:
    """Refuse a result that still goes through a symlink or contains "..".

    os.path.realpath gives up at a symlink loop and returns the rest of the path unresolved
    and lexically normalised, so "loop/../link_to_etc/passwd" came back as
    "<root>/link_to_etc/passwd": inside the root on paper, outside it once opened.
    """
    relative = os.path.relpath(candidate, real_root)
    if relative == ".":
        return
    current = real_root
    for part in relative.split(os.sep):
        if part == "..":
            raise PathEscapeError(f"path leaves its folder: {user_path!r}")
        current = os.path.join(current, part)
        try:
            mode = os.lstat(current).st_mode
        except OSError:
            return  # the rest does not exist yet (an upload target); nothing left to follow
        if stat.S_ISLNK(mode):
            # Only a symlink realpath could not resolve is left here; where it points is unknown,
            # so it is treated as the escape it usually is ("loop/../link_to_etc/passwd").
            raise PathEscapeError(f"path goes through a symlink that cannot be resolved (a loop?): {user_path!r}")


def split_annotated_name(name: str, default_type: str = "input") -> tuple[str, str]:
    """Split ComfyUI's annotated file names ("x.png [output]") into (name, folder type).

    Only the type is decided here; the name still goes through `resolve_under`.
    """
    if not isinstance(name, str):
        raise UnsafePathError(f"expected a file name string, got {type(name).__name__}")
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

    def list_files(
        self, root: Path, extensions: frozenset[str] | None = None, folder_marker: str | None = None
    ) -> list[str]:
        """Relative file names under `root`, sorted, with '/' separators; hidden files skipped.

        A subfolder containing a file named `folder_marker` is listed as one entry (its own
        relative name) and its contents are not listed. Symlinked folders are not followed.
        """
        if not root.is_dir():
            return []
        names = []
        for current, folders, files in os.walk(root):
            here = Path(current)
            relative = here.relative_to(root)
            folders[:] = [folder for folder in folders if not folder.startswith(".")]
            if folder_marker is not None and here != root and folder_marker in files:
                names.append(relative.as_posix())
                folders.clear()
                continue
            for file in files:
                if file.startswith(".") or not (here / file).is_file():
                    continue
                if extensions is None or Path(file).suffix.lower() in extensions:
                    names.append((relative / file).as_posix())
        return sorted(names)

    def list_models(self, name: str) -> list[str]:
        """Model files (.safetensors, .sft) and diffusers-layout model folders in models/<name>."""
        return self.list_files(self.model_folder(name), MODEL_EXTENSIONS, MODEL_FOLDER_MARKER)

    def list_input_images(self) -> list[str]:
        return self.list_files(self.input_dir, IMAGE_EXTENSIONS)

    def choices(self, source: str) -> list[str]:
        """The combo listing for an input's `choice_source`."""
        if source == "input":
            return self.list_input_images()
        return self.list_models(source)

    def resolve_model(self, folder: str, name: str) -> Path:
        """The real path of a listed model: a weights file or a model folder (model_index.json)."""
        return resolve_under(self.model_folder(folder), name)

    def resolve_annotated(self, name: str, default_type: str = "input") -> Path:
        """Resolve "x.png", "sub/x.png" or "x.png [output]" to a real path inside its root."""
        plain, folder_type = split_annotated_name(name, default_type)
        return resolve_under(self.root_for_type(folder_type), plain)
