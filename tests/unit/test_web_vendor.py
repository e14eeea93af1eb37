"""The vendored canvas library is byte-identical to the published @comfyorg/litegraph 0.17.2 files,
with its licence: web/vendor/litegraph/VERSION records their sha256, and overrides live only in
web/js/patches/ (frontend.md §6)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

VENDOR = Path(__file__).resolve().parents[2] / "web" / "vendor" / "litegraph"
WEB_JS = VENDOR.parents[1] / "js"


def recorded_hashes() -> dict[str, str]:
    return dict(re.findall(r"^sha256 (\S+): ([0-9a-f]{64})$", (VENDOR / "VERSION").read_text(), re.MULTILINE))


def test_vendored_files_match_the_recorded_hashes() -> None:
    hashes = recorded_hashes()
    assert set(hashes) == {"litegraph.es.js", "litegraph.css", "LICENSE"}
    for name, expected in hashes.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == expected, name
    assert "version: 0.17.2" in (VENDOR / "VERSION").read_text()
    assert "Permission is hereby granted, free of charge" in (VENDOR / "LICENSE").read_text()


def test_only_the_patch_module_overrides_litegraph_prototypes() -> None:
    offenders = [path.relative_to(WEB_JS).as_posix() for path in WEB_JS.rglob("*.js")
                 if re.search(r"\b(LGraph\w*|LiteGraph|\w+Widget)\.prototype\.\w+\s*=", path.read_text())
                 and path.parent.name != "patches"]
    assert offenders == []
