"""Byte accounting for one memory tier (host or device): what is resident, how big, and who goes first.

The manager asks `make_room` before it places a model; the answer is the least recently used
entries to drop, skipping the ones in use. A model larger than the whole budget is not refused
here: the caller decides (the host tier loads it anyway, the device tier streams it).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class Residency:
    """Sizes of resident entries in least-recently-used order, within `budget` bytes."""

    def __init__(self, budget: int) -> None:
        if budget < 0:
            raise ValueError(f"a memory budget cannot be negative, got {budget} bytes")
        self.budget = budget
        self._sizes: OrderedDict[Hashable, int] = OrderedDict()

    @property
    def used(self) -> int:
        return sum(self._sizes.values())

    def __contains__(self, key: Hashable) -> bool:
        return key in self._sizes

    def keys(self) -> list[Hashable]:
        """Entries from least to most recently used."""
        return list(self._sizes)

    def add(self, key: Hashable, size: int) -> None:
        self._sizes[key] = size
        self._sizes.move_to_end(key)

    def touch(self, key: Hashable) -> None:
        self._sizes.move_to_end(key)

    def remove(self, key: Hashable) -> None:
        self._sizes.pop(key, None)

    def make_room(self, size: int, in_use: set[Hashable]) -> list[Hashable]:
        """The entries to drop, oldest first, so that `size` more bytes fit; entries in `in_use` stay.

        When even dropping every free entry is not enough, all free entries are returned: the
        caller goes over budget by what cannot be dropped (or streams).
        """
        free = self.budget - self.used
        victims = []
        for key, held in self._sizes.items():
            if free >= size:
                break
            if key in in_use:
                continue
            victims.append(key)
            free += held
        return victims
