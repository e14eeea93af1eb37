"""Path-traversal corpus for `resolve_under` and `Folders.resolve_annotated` (security.md §5.2, §6 check 4).

A sentinel file sits outside every root. Each payload must either raise UnsafePathError or
resolve to a path inside its root that is not the sentinel, checked through the kernel's view
(realpath, lstat) rather than by reading bytes. Symlinks planted inside the roots point at a
directory and a file outside, through a chain, and through loops.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.paths import Folders, UnsafePathError, resolve_under, split_annotated_name

SENTINEL_BYTES = b"FLOWMILL-SENTINEL-must-never-be-served"


@dataclass(frozen=True)
class Layout:
    folders: Folders
    outside: Path
    sentinel: Path


def build_layout(base: Path) -> Layout:
    """Roots under base/data; the sentinel in base/outside; symlinks planted in input and output."""
    folders = Folders.under(base / "data")
    folders.create()
    (folders.models_dir / "checkpoints").mkdir(parents=True)
    outside = base / "outside"
    outside.mkdir()
    sentinel = outside / "sentinel.txt"
    sentinel.write_bytes(SENTINEL_BYTES)
    for root in (folders.input_dir, folders.output_dir):
        (root / "sub" / "dir").mkdir(parents=True)
        (root / "sub" / "dir" / "a.png").write_bytes(b"png")
        (root / "link_dir").symlink_to(outside, target_is_directory=True)
        (root / "link_file.png").symlink_to(sentinel)
        (root / "chain_c").symlink_to(sentinel)
        (root / "chain_b").symlink_to("chain_c")
        (root / "chain_a").symlink_to("chain_b")
        (root / "rel_up").symlink_to(os.path.join("..", "..", "outside"))
        (root / "loop").symlink_to("loop")
        (root / "loop_a").symlink_to("loop_b")
        (root / "loop_b").symlink_to("loop_a")
        (root / "inner_ok").symlink_to("sub")  # a legitimate link that stays inside
    return Layout(folders=folders, outside=outside, sentinel=sentinel)


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return build_layout(tmp_path)


def assert_contained(result: Path, root: Path, layout: Layout) -> None:
    """The resolved path, as the kernel will open it, lies inside `root` and is not the sentinel."""
    real_root = os.path.realpath(root)
    kernel_view = os.path.realpath(result)
    assert os.path.commonpath([real_root, kernel_view]) == real_root, f"{result} leaves {real_root}"
    assert ".." not in result.parts, f"unresolved '..' left in {result}"
    assert not Path(kernel_view).is_relative_to(layout.outside), f"{result} reaches the outside folder"
    if os.path.lexists(kernel_view):
        assert not os.path.samefile(kernel_view, layout.sentinel), f"{result} is the sentinel"
    # Every existing component was resolved: nothing left for open() to follow.
    current = Path(real_root)
    for part in Path(kernel_view).relative_to(real_root).parts:
        current = current / part
        if not os.path.lexists(current):
            break
        assert not current.is_symlink(), f"{result} still goes through the symlink {current}"


def _encoded(raw: str, label: str) -> list[object]:
    """The raw string and its forms after one and two rounds of URL decoding."""
    return [
        pytest.param(raw, id=f"{label}-raw"),
        pytest.param(unquote(raw), id=f"{label}-unquoted-once"),
        pytest.param(unquote(unquote(raw)), id=f"{label}-unquoted-twice"),
    ]


DOT_DOT = [
    pytest.param("../../outside/sentinel.txt", id="dotdot-slash"),
    pytest.param("../" * 16 + "etc/passwd", id="dotdot-deep"),
    pytest.param("..", id="dotdot-alone"),
    pytest.param("../", id="dotdot-trailing-slash"),
    pytest.param("..\\..\\outside\\sentinel.txt", id="dotdot-backslash"),
    pytest.param("..\\../outside/sentinel.txt", id="dotdot-mixed-separators"),
    pytest.param("....//....//outside/sentinel.txt", id="quad-dot-double-slash"),
    pytest.param("....\\\\....\\\\outside\\sentinel.txt", id="quad-dot-double-backslash"),
    pytest.param(".../.../outside", id="triple-dot"),
    pytest.param("a/../../../outside/sentinel.txt", id="inner-dotdot"),
    pytest.param("./../../outside/sentinel.txt", id="dot-then-dotdot"),
    pytest.param("sub/dir/../../../../outside/sentinel.txt", id="climb-out-of-subdir"),
    pytest.param(posixpath.join("../../outside", "sentinel.txt"), id="subfolder-join-dotdot"),
    pytest.param(posixpath.join("..\\..\\outside", "sentinel.txt"), id="subfolder-join-backslash"),
    pytest.param(posixpath.join("sub", "/etc/passwd"), id="subfolder-join-absolute-filename"),
    pytest.param(posixpath.join("sub/../..", "../outside/sentinel.txt"), id="subfolder-join-split-dotdot"),
]

ENCODED = [
    *_encoded("%2e%2e%2f%2e%2e%2foutside%2fsentinel.txt", "pct-dotdot-slash"),
    *_encoded("%252e%252e%252f%252e%252e%252foutside%252fsentinel.txt", "double-pct-dotdot-slash"),
    *_encoded("..%2f..%2foutside%2fsentinel.txt", "dotdot-pct-slash"),
    *_encoded("%2e%2e/%2e%2e/outside/sentinel.txt", "pct-dots-plain-slash"),
    *_encoded("..%5c..%5coutside%5csentinel.txt", "dotdot-pct-backslash"),
    *_encoded("%252e%252e%255c%252e%252e%255coutside", "double-pct-backslash"),
    *_encoded("%c0%ae%c0%ae%c0%af%c0%ae%c0%ae%c0%afoutside", "overlong-utf8"),
    *_encoded("%ef%bc%8e%ef%bc%8e%ef%bc%8f%ef%bc%8e%ef%bc%8e%ef%bc%8foutside", "fullwidth-utf8"),
    *_encoded("%2fetc%2fpasswd", "pct-absolute"),
    *_encoded("x.png%00.txt", "pct-nul"),
]

ABSOLUTE = [
    pytest.param("/etc/passwd", id="absolute"),
    pytest.param("//etc/passwd", id="absolute-double-slash"),
    pytest.param("///etc/passwd", id="absolute-triple-slash"),
    pytest.param("\\etc\\passwd", id="absolute-backslash"),
    pytest.param("/", id="filesystem-root"),
    pytest.param("SENTINEL_ABSOLUTE", id="absolute-path-to-sentinel"),
]

WINDOWS = [
    pytest.param("C:\\Windows\\win.ini", id="windows-drive-backslash"),
    pytest.param("C:/x", id="windows-drive-slash"),
    pytest.param("c:x", id="windows-drive-relative"),
    pytest.param("D:..\\outside", id="windows-drive-dotdot"),
    pytest.param("\\\\host\\share\\x", id="windows-unc"),
    pytest.param("\\\\?\\C:\\Windows\\win.ini", id="windows-extended-length"),
    pytest.param("\\\\.\\pipe\\x", id="windows-device-namespace"),
    pytest.param("..\\..\\x", id="windows-dotdot"),
    pytest.param("CON", id="windows-device-con"),
    pytest.param("nul.png", id="windows-device-nul-with-extension"),
    pytest.param("sub/aux.txt", id="windows-device-in-subfolder"),
    pytest.param("COM1 .png", id="windows-device-com1-space"),
    pytest.param("x.png::$DATA", id="windows-alternate-data-stream"),
]

NUL_AND_CONTROL = [
    pytest.param("x.png\x00.txt", id="nul-inside"),
    pytest.param("../../outside/sentinel.txt\x00.png", id="nul-after-traversal"),
    pytest.param("\x00", id="nul-alone"),
    pytest.param("x\r\nSet-Cookie: a=b.png", id="crlf-header-injection"),
    pytest.param("x\n.png", id="newline"),
]

UNICODE = [
    pytest.param("\xc0\xae\xc0\xae/\xc0\xae\xc0\xae/outside/sentinel.txt", id="overlong-as-latin1"),
    pytest.param(os.fsdecode(b"\xc0\xae\xc0\xae/\xc0\xae\xc0\xae/outside/sentinel.txt"), id="overlong-as-surrogates"),
    pytest.param("\uff0e\uff0e/\uff0e\uff0e/outside/sentinel.txt", id="fullwidth-dots"),
    pytest.param("\uff0e\uff0e\uff0f\uff0e\uff0e\uff0foutside\uff0fsentinel.txt", id="fullwidth-dots-and-slashes"),
    pytest.param("\uff0e\uff0e\uff3c\uff0e\uff0e\uff3coutside", id="fullwidth-backslash"),
    pytest.param("\u2025/\u2025/outside/sentinel.txt", id="two-dot-leader"),
    pytest.param("\u2024\u2024/\u2024\u2024/outside", id="one-dot-leader"),
    pytest.param("..\u2215..\u2215outside", id="division-slash"),
    pytest.param("\u2100", id="account-of-folds-to-slash"),
    pytest.param("\ud800/x.png", id="lone-surrogate"),
]

TRAILING = [
    pytest.param("../../outside/sentinel.txt.", id="trailing-dot"),
    pytest.param("../../outside/sentinel.txt ", id="trailing-space"),
    pytest.param(".. /.. /outside/sentinel.txt", id="dotdot-space"),
    pytest.param("... /... /outside", id="triple-dot-space"),
    pytest.param(". ./x", id="dot-space-dot"),
    pytest.param("x.png.", id="extension-trailing-dot"),
    pytest.param("x.py ", id="extension-trailing-space"),
    pytest.param("sub./a.png", id="folder-trailing-dot"),
]

SYMLINKS = [
    pytest.param("link_dir/sentinel.txt", id="symlink-dir-to-outside"),
    pytest.param("link_dir", id="symlink-dir-itself"),
    pytest.param("link_file.png", id="symlink-file-to-sentinel"),
    pytest.param("chain_a", id="symlink-chain"),
    pytest.param("rel_up/sentinel.txt", id="symlink-relative-target"),
    pytest.param("sub/../link_dir/sentinel.txt", id="symlink-after-dotdot"),
    pytest.param("inner_ok/../link_file.png", id="symlink-after-inner-link"),
    pytest.param("loop", id="symlink-self-loop"),
    pytest.param("loop/x.png", id="symlink-through-loop"),
    pytest.param("loop/../link_dir/sentinel.txt", id="symlink-loop-then-link"),  # the realpath gap
    pytest.param("loop_a/../link_file.png", id="symlink-two-link-loop-then-link"),
    pytest.param("loop_a/../chain_a", id="symlink-loop-then-chain"),
]

ANNOTATED = [
    pytest.param("../x [output]", id="annotated-dotdot-output"),
    pytest.param("../../outside/sentinel.txt [input]", id="annotated-dotdot-input"),
    pytest.param("../../outside/sentinel.txt [output]", id="annotated-dotdot-output-sentinel"),
    pytest.param("../../../outside/sentinel.txt [temp]", id="annotated-dotdot-temp"),
    pytest.param("sub/../../x [temp]", id="annotated-inner-dotdot"),
    pytest.param("/etc/passwd [output]", id="annotated-absolute"),
    pytest.param("link_dir/sentinel.txt [output]", id="annotated-symlink-output"),
    pytest.param("loop/../link_file.png [output]", id="annotated-loop-then-link"),
    pytest.param("x.png [../../]", id="annotated-bogus-type"),
    pytest.param("x.png [output] [input]", id="annotated-twice"),
]

CORPUS = [*DOT_DOT, *ENCODED, *ABSOLUTE, *WINDOWS, *NUL_AND_CONTROL, *UNICODE, *TRAILING, *SYMLINKS, *ANNOTATED]


def _materialise(payload: str, layout: Layout) -> str:
    return str(layout.sentinel) if payload == "SENTINEL_ABSOLUTE" else payload


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("payload", CORPUS)
def test_resolve_under_contains(layout: Layout, payload: str) -> None:
    root = layout.folders.input_dir
    try:
        result = resolve_under(root, _materialise(payload, layout))
    except UnsafePathError:
        return
    assert_contained(result, root, layout)


@pytest.mark.parametrize("payload", CORPUS)
def test_resolve_annotated_contains(layout: Layout, payload: str) -> None:
    payload = _materialise(payload, layout)
    try:
        result = layout.folders.resolve_annotated(payload)
    except UnsafePathError:
        return
    _, folder_type = split_annotated_name(payload)
    assert_contained(result, layout.folders.root_for_type(folder_type), layout)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param("link_dir/sentinel.txt", id="link-dir"),
        pytest.param("link_file.png", id="link-file"),
        pytest.param("chain_a", id="chain"),
        pytest.param("rel_up/sentinel.txt", id="relative-link"),
        pytest.param("loop/../link_dir/sentinel.txt", id="loop-then-link"),
        pytest.param("loop_a/../link_file.png", id="two-link-loop-then-link"),
        pytest.param("../../outside/sentinel.txt", id="dotdot"),
        pytest.param("..\\..\\outside\\sentinel.txt", id="dotdot-backslash"),
        pytest.param("C:\\Windows\\win.ini", id="drive"),
        pytest.param("\\\\host\\share\\x", id="unc"),
        pytest.param("x.png\x00.txt", id="nul"),
        pytest.param("\uff0e\uff0e/\uff0e\uff0e/outside/sentinel.txt", id="fullwidth"),
    ],
)
def test_escapes_are_refused_not_just_contained(layout: Layout, payload: str) -> None:
    """These must be errors, not silently mapped somewhere else inside the root."""
    with pytest.raises(UnsafePathError):
        resolve_under(layout.folders.input_dir, payload)


def test_refuses_sentinel_by_absolute_path(layout: Layout) -> None:
    with pytest.raises(UnsafePathError, match="absolute"):
        resolve_under(layout.folders.input_dir, str(layout.sentinel))


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param("test..png", "test..png", id="double-dot-inside-name"),
        pytest.param("..png", "..png", id="leading-double-dot-name"),
        pytest.param("a..b..c.png", "a..b..c.png", id="many-double-dots"),
        pytest.param("sub/dir/a.png", "sub/dir/a.png", id="nested"),
        pytest.param("sub\\dir\\a.png", "sub/dir/a.png", id="nested-backslashes"),
        pytest.param("sub//dir/./a.png", "sub/dir/a.png", id="redundant-separators"),
        pytest.param("a/../b.png", "b.png", id="dotdot-that-stays-inside"),
        pytest.param("ünïcødé.png", "ünïcødé.png", id="latin-accents"),
        pytest.param("日本語/画像.png", "日本語/画像.png", id="cjk"),
        pytest.param("a b.png", "a b.png", id="inner-space"),
        pytest.param("wait\u2026.png", "wait\u2026.png", id="ellipsis-in-name"),
        pytest.param("console.png", "console.png", id="starts-like-device-name"),
        pytest.param("%2e%2e%2fx.png", "%2e%2e%2fx.png", id="percent-signs-kept-literally"),
        pytest.param("new_upload.png", "new_upload.png", id="does-not-exist-yet"),
        pytest.param("inner_ok/dir/a.png", "sub/dir/a.png", id="symlink-inside-root"),
    ],
)
def test_legitimate_names_resolve(layout: Layout, payload: str, expected: str) -> None:
    root = layout.folders.input_dir
    assert resolve_under(root, payload) == Path(os.path.realpath(root)) / expected


@pytest.mark.parametrize("payload", ["", "."], ids=["empty", "dot"])
def test_empty_subfolder_is_the_root(layout: Layout, payload: str) -> None:
    root = layout.folders.input_dir
    assert resolve_under(root, payload) == Path(os.path.realpath(root))


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        pytest.param("x.png", "input", id="default"),
        pytest.param("x.png [output]", "output", id="output"),
        pytest.param("sub/x.png [temp]", "temp", id="temp-subfolder"),
        pytest.param("test..png [input]", "input", id="input-double-dot"),
    ],
)
def test_legitimate_annotated_names(layout: Layout, name: str, folder: str) -> None:
    result = layout.folders.resolve_annotated(name)
    root = Path(os.path.realpath(layout.folders.root_for_type(folder)))
    assert result.parent.is_relative_to(root)
    assert result.name == "x.png" or result.name == "test..png"


def test_root_reached_through_a_symlink_still_works(tmp_path: Path, layout: Layout) -> None:
    """The root itself may be a symlink (e.g. /tmp on macOS); names inside it still resolve."""
    alias = tmp_path / "alias_input"
    alias.symlink_to(layout.folders.input_dir, target_is_directory=True)
    assert resolve_under(alias, "sub/dir/a.png") == Path(os.path.realpath(layout.folders.input_dir)) / "sub/dir/a.png"
    with pytest.raises(UnsafePathError):
        resolve_under(alias, "../outside/sentinel.txt")


def test_model_names_are_contained(layout: Layout) -> None:
    with pytest.raises(UnsafePathError):
        layout.folders.resolve_model("checkpoints", "../../../outside/sentinel.txt")
    good = layout.folders.resolve_model("checkpoints", "sd/model.safetensors")
    assert good.is_relative_to(os.path.realpath(layout.folders.models_dir / "checkpoints"))


@pytest.mark.parametrize("value", [b"x.png", None, 3, ["x.png"]], ids=["bytes", "none", "int", "list"])
def test_non_strings_are_refused(layout: Layout, value: object) -> None:
    with pytest.raises(UnsafePathError, match="expected"):
        resolve_under(layout.folders.input_dir, value)  # type: ignore[arg-type]
    with pytest.raises(UnsafePathError, match="expected"):
        layout.folders.resolve_annotated(value)  # type: ignore[arg-type]


def test_overlong_names_are_refused(layout: Layout) -> None:
    with pytest.raises(UnsafePathError, match="longer"):
        resolve_under(layout.folders.input_dir, "a/" * 5000)


@pytest.fixture(scope="module")
def shared_layout(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    return build_layout(tmp_path_factory.mktemp("property"))


PIECES = st.sampled_from(
    ["..", ".", "...", "sub", "dir", "a.png", "link_dir", "link_file.png", "chain_a", "rel_up", "loop", "loop_a"]
    + ["inner_ok", "outside", "sentinel.txt", "%2e", "\uff0e\uff0e", "C:", "", " ", "x."]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(PIECES, max_size=8), separators=st.lists(st.sampled_from(["/", "\\", "//"]), max_size=8))
def test_random_joins_never_escape(shared_layout: Layout, parts: list[str], separators: list[str]) -> None:
    """Any mix of dot-dots, separators and planted links stays inside or raises."""
    payload = ""
    for index, part in enumerate(parts):
        payload += part + (separators[index] if index < len(separators) else "/")
    root = shared_layout.folders.input_dir
    try:
        result = resolve_under(root, payload)
    except UnsafePathError:
        return
    assert_contained(result, root, shared_layout)
