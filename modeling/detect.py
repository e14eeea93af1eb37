"""Which model family a state dict holds, decided from its keys alone.

Every row whose required key patterns all match is a candidate; the most specific one (the
most patterns) wins, and a tie is an error rather than a guess. When nothing matches, the
error lists the rows that matched in part, what they missed, and the key groups the file
does hold, so a user can tell a wrong folder from an unsupported architecture.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from modeling.errors import ModelFileError
from modeling.families import Component, ModelFamily, families_for
from modeling.state_dicts import describe_groups


class UnknownCheckpointError(ModelFileError):
    """No model family (or more than one, equally) fits a state dict's keys."""


def detect_family(
    state: Mapping[str, torch.Tensor],
    component: Component | None = None,
    *,
    source: str | None = None,
) -> ModelFamily:
    """The family whose key patterns `state` matches; `source` names the file in errors."""
    candidates = families_for(component)
    if not candidates:
        raise ValueError(f"unknown model component {component!r}")
    complete: list[ModelFamily] = []
    partial: list[str] = []
    for family in candidates:
        keys = list(family.canonical(state))
        missing = family.missing_patterns(keys)
        excluding = family.excluding_patterns(keys)
        if not missing and not excluding:
            complete.append(family)
        elif len(missing) < len(family.required_keys):
            matched = [pattern for pattern in family.required_keys if pattern not in missing]
            reason = f"missing {', '.join(repr(item) for item in missing)}" if missing else ""
            if excluding:
                reason += ("; " if reason else "") + f"has {', '.join(repr(item) for item in excluding)}"
            total = len(family.required_keys)
            partial.append(f"{family.name} ({family.component}): {len(matched)} of {total} key patterns found, "
                           f"{reason}; matched {', '.join(repr(item) for item in matched)}")
    if complete:
        best = max(len(family.required_keys) for family in complete)
        winners = [family for family in complete if len(family.required_keys) == best]
        if len(winners) == 1:
            return winners[0]
        raise UnknownCheckpointError(
            f"{_subject(component, source)} matches several model families equally well: "
            f"{', '.join(family.name for family in winners)}; cannot tell which one it is"
        )
    raise UnknownCheckpointError(_unknown_message(state, component, source, partial, candidates))


def _subject(component: Component | None, source: str | None) -> str:
    what = component.replace("_", " ") if component else "model"
    return f"{source}: this {what}" if source else f"this {what}"


def _unknown_message(
    state: Mapping[str, torch.Tensor],
    component: Component | None,
    source: str | None,
    partial: list[str],
    candidates: list[ModelFamily],
) -> str:
    known = ", ".join(f"{family.name} ({family.component})" for family in candidates)
    recognised = "; ".join(partial) if partial else "no known family matched any of its key patterns"
    return (
        f"{_subject(component, source)} is not a checkpoint Flowmill recognises. "
        f"Recognised in part: {recognised}. "
        f"Not recognised: the file's key groups: {describe_groups(state)}. "
        f"Known families: {known}."
    )
