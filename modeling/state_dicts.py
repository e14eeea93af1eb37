"""Small readers over state dicts: shapes, indexed block counts, key prefixes and key groups.

Architecture rows in `modeling/architectures/` infer their configs through these, so every
missing weight is reported the same way. Pure functions over mappings; no file access.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping

import torch

from modeling.errors import ModelFileError


def shape_of(state: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    """The shape of weight `key`, or a ModelFileError naming the missing key."""
    if key not in state:
        raise ModelFileError(f"missing weight {key!r}")
    return tuple(state[key].shape)


def indexed_count(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    """How many numbered children `prefix<N>.` the keys hold (e.g. `transformer_blocks.`)."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(match.group(1)) for key in state if (match := pattern.match(key))}
    if indices and indices != set(range(max(indices) + 1)):
        raise ModelFileError(f"blocks under {prefix!r} are not numbered 0..{max(indices)}: {sorted(indices)}")
    return len(indices)


def with_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under `prefix`, with the prefix removed."""
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def key_groups(keys: Iterable[str]) -> list[tuple[str, int]]:
    """The keys' leading names with their counts, most common first, for error messages.

    Keys that all share one leading name ("model.", "text_model.") are described one level
    deeper, so the message shows what the file actually holds; block numbers end a name.
    """
    names = list(keys)
    depth = 1
    groups = Counter(_head(key, depth) for key in names)
    while len(groups) == 1 and depth < 4:
        deeper = Counter(_head(key, depth + 1) for key in names)
        if deeper == groups:
            break
        depth, groups = depth + 1, deeper
    return groups.most_common()


def _head(key: str, depth: int) -> str:
    head = []
    for part in (key.split(".")[:-1] or [key])[:depth]:  # the leaf ("weight") never names a group
        if part.isdigit():
            break
        head.append(part)
    return ".".join(head) or key


def describe_groups(keys: Iterable[str], limit: int = 12) -> str:
    """The key groups as text, e.g. "encoder (120 keys), decoder (130 keys), and 2 more groups"."""
    groups = key_groups(keys)
    if not groups:
        return "no keys at all"
    text = ", ".join(f"{name} ({count} keys)" for name, count in groups[:limit])
    return text + (f", and {len(groups) - limit} more groups" if len(groups) > limit else "")
