"""Error text for clients without the server's absolute paths.

Validation, execution, upload and `/view` errors often carry a path: an OSError's file name, a
node's "cannot open /home/me/flowmill/input/x.png", a traceback's source lines. A client needs the
file's place relative to the folders it knows (`input/x.png`, `models/vae/...`), not where this
machine keeps them. `PathRedactor` rewrites every known root (the models, input, output, temp and
user folders, Flowmill's own folder, the Python installation) to a short label, longest root first
so a nested root wins over its parent; `redact_value` does the same through JSON-like values.

Standard library only; the redactor is built once per app from its folders, nothing is global.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parent.parent


class PathRedactor:
    def __init__(self, roots: Iterable[tuple[Path, str]]) -> None:
        replacements: dict[str, str] = {}
        for root, label in roots:
            for spelling in {str(root), os.path.abspath(root), os.path.realpath(root)}:
                if len(spelling) > 1:  # never "/" itself
                    replacements.setdefault(spelling.rstrip(os.sep), label)
        self._labels = replacements
        ordered = sorted(replacements, key=len, reverse=True)
        # A root matches only as a whole path prefix: "/srv/app" must not eat "/srv/apple".
        alternatives = "|".join(re.escape(root) for root in ordered)
        self._pattern = re.compile(f"(?:{alternatives})(?![\\w.-])") if ordered else None

    @classmethod
    def for_folders(cls, folders: Any) -> PathRedactor:
        """Labels for an engine `Folders` (models, input, output, temp, user) and the installation."""
        roots = [(folders.models_dir, "models"), (folders.input_dir, "input"), (folders.output_dir, "output"),
                 (folders.temp_dir, "temp"), (folders.user_dir, "user"), (PROJECT_DIR, "<flowmill>")]
        roots += [(Path(prefix), "<python>") for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}]
        roots.append((Path.home(), "~"))
        return cls(roots)

    def redact(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda match: self._labels[match.group(0)], text)

    def redact_value(self, value: Any) -> Any:
        """A copy of a JSON-like value (dicts, lists, strings) with every string redacted."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {key: self.redact_value(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.redact_value(item) for item in value]
        return value
