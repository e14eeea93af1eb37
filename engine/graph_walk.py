"""One iterative depth-first walk over a graph's links, shared by validation and cache keys.

Iterative on purpose: ComfyUI's recursive walks die near 981 chained nodes, and depth here
is bounded only by memory. The walk reports nodes in post-order (every source before its
consumers) and hands each cycle it meets to the caller, which decides whether a cycle is
an error to collect (validation) or to raise (cache keys).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable

Sources = Callable[[str], list[str]]
CycleHandler = Callable[[list[str]], None]


def post_order(roots: Iterable[str], sources: Sources, on_cycle: CycleHandler,
               skip: Container[str] = frozenset()) -> list[str]:
    """Nodes reachable from `roots`, sources first; nodes in `skip` are neither entered nor listed.

    `sources(node)` is called exactly once per node entered, so it may do per-node work (the
    validator checks each node there). `on_cycle` receives the cycle as [first, ..., first].
    """
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    order: list[str] = []
    for root in roots:
        if root in skip or root in state:
            continue
        state[root] = 1
        stack = [(root, list(sources(root)))]
        while stack:
            node_id, pending = stack[-1]
            if not pending:
                stack.pop()
                state[node_id] = 2
                order.append(node_id)
                continue
            source = pending.pop()
            if source in skip or state.get(source) == 2:
                continue
            if state.get(source) == 1:
                path = [entry[0] for entry in stack]
                on_cycle(path[path.index(source):] + [source])
                continue
            state[source] = 1
            stack.append((source, list(sources(source))))
    return order
