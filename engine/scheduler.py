"""Dependency bookkeeping for one run: what each node waits for, and what is ready.

This is a "topological dissolve" built on demand: the executor requests nodes starting from
the outputs, each requested node waits on the sources it needs now (lazy inputs only once
asked for), and a node becomes ready when its last source is available. Nodes can be put
back to waiting (lazy inputs asked for, expansions pending), which is how lazy evaluation
and node expansion share one mechanism. Output nodes are picked first so results appear
early.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


class Schedule:
    def __init__(self, output_nodes: Iterable[str]) -> None:
        self.outputs = frozenset(output_nodes)
        self.requested: set[str] = set()
        self.available: set[str] = set()
        self._waiting: dict[str, set[str]] = {}
        self._consumers: dict[str, set[str]] = {}
        self._ready_outputs: deque[str] = deque()
        self._ready: deque[str] = deque()

    def wait_for(self, node_id: str, sources: Iterable[str]) -> None:
        """Make `node_id` wait until every one of `sources` is available (ready at once if none)."""
        missing = {source for source in sources if source not in self.available}
        self._waiting[node_id] = missing
        for source in missing:
            self._consumers.setdefault(source, set()).add(node_id)
        if not missing:
            self._make_ready(node_id)

    def mark_available(self, node_id: str) -> None:
        self.available.add(node_id)
        self._waiting.pop(node_id, None)
        for consumer in self._consumers.pop(node_id, ()):
            waiting = self._waiting.get(consumer)
            if waiting is None:
                continue
            waiting.discard(node_id)
            if not waiting:
                self._make_ready(consumer)

    def pop_ready(self) -> str | None:
        if self._ready_outputs:
            return self._ready_outputs.popleft()
        if self._ready:
            return self._ready.popleft()
        return None

    def stalled(self) -> list[str]:
        """Nodes still waiting on something; non-empty at the end of a run means a cycle."""
        return sorted(node_id for node_id, waiting in self._waiting.items() if waiting)

    def _make_ready(self, node_id: str) -> None:
        del self._waiting[node_id]
        (self._ready_outputs if node_id in self.outputs else self._ready).append(node_id)
