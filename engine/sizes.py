"""Byte sizes as people write them ("8GiB", "512 MB") and as Flowmill prints them ("12.0 GiB").

Standard library only, so the command line can parse `--max-tensor-bytes` without loading torch.
"""

from __future__ import annotations

import re

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5,
          "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4, "pb": 1000**5,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4, "pib": 1024**5}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)
_BINARY_STEPS = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def parse_bytes(text: str) -> int:
    """"8GiB", "512 MB", "1.5g", "1073741824" -> bytes; ValueError naming the accepted forms.

    Binary suffixes (KiB, MiB, GiB, TiB, and the bare K, M, G, T) count in 1024s; KB, MB,
    GB, TB count in 1000s, as disk makers and `ls --si` do.
    """
    found = _SIZE.match(str(text))
    unit = found.group(2).lower() if found else ""
    if not found or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size: expected a number of bytes with an optional unit, "
                         f"e.g. 8GiB, 512MiB, 16GB or 1073741824")
    size = int(float(found.group(1)) * _UNITS[unit])
    if size <= 0:
        raise ValueError(f"{text!r}: the budget must be more than 0 bytes")
    return size


def format_bytes(size: int) -> str:
    """A byte count in binary units: 12884901888 -> "12.0 GiB"."""
    value = float(size)
    for step in _BINARY_STEPS:
        if value < 1024 or step == _BINARY_STEPS[-1]:
            return f"{int(value)} bytes" if step == "bytes" else f"{value:.1f} {step}"
        value /= 1024
    raise AssertionError("unreachable")
