"""Merkle cache keys: hash(node's own signature, keys of its direct inputs).

ComfyUI's key is the list of every ancestor's signature, which costs O(N^2) on a chain
(comfyui-compat.md §16). Here each key is a fixed-size digest computed once per node from
its class type, literal inputs, fingerprint and the keys of the nodes it links to, so a
whole graph costs O(nodes + edges). Walks are iterative: depth is unbounded.

Semantics kept from ComfyUI:
- literal inputs that cannot be serialised make the node uncacheable (fresh key each run);
- a NaN fingerprint means "always changed";
- `not_idempotent` nodes include their node id, so two identical ones do not share a result;
- `pure=False` nodes get a fresh key every run (Flowmill's explicit opt-out).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Container, Iterable, Iterator, Mapping
from typing import Any

from engine.graph_walk import post_order as walk_post_order
from engine.spec import NodeSpec
from engine.wire import is_link


class DependencyCycleError(RuntimeError):
    """Links form a cycle (possible only through dynamic expansion; validation rejects static ones)."""

    def __init__(self, cycle: list[str]) -> None:
        super().__init__(f"Dependency cycle detected through nodes {' -> '.join(cycle)}")
        self.cycle = cycle


def links_of(node: Mapping[str, Any]) -> Iterator[tuple[str, str, int]]:
    """(input name, source node id, source slot) for every link input of an API-format node."""
    for name, value in (node.get("inputs") or {}).items():
        if is_link(value):
            yield name, str(value[0]), value[1]


def post_order(nodes: Mapping[str, Mapping[str, Any]], roots: Iterable[str], done: Container[str]) -> list[str]:
    """Nodes reachable from `roots` through links, sources first, skipping those in `done`."""

    def sources(node_id: str) -> list[str]:
        return [source for _, source, _ in links_of(nodes[node_id])]

    def refuse(cycle: list[str]) -> None:
        raise DependencyCycleError(cycle)

    return walk_post_order(roots, sources, refuse, skip=done)


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def node_key(
    node_id: str,
    node: Mapping[str, Any],
    spec: NodeSpec,
    keys: Mapping[str, bytes],
    fingerprint: Any,
    run_salt: bytes,
) -> bytes:
    """The cache key of one node, given the keys of the nodes it links to."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(spec.id.encode())
    literals = {name: value for name, value in (node.get("inputs") or {}).items() if not is_link(value)}
    try:
        digest.update(json.dumps(literals, sort_keys=True, separators=(",", ":")).encode())
    except (TypeError, ValueError, RecursionError):
        digest.update(run_salt + node_id.encode())  # unserialisable literal: never a hit
    if spec.has_fingerprint:
        if _is_nan(fingerprint):
            digest.update(run_salt + node_id.encode())
        else:
            digest.update(b"\x00fp" + repr(fingerprint).encode())
    if spec.not_idempotent:
        digest.update(b"\x00id" + node_id.encode())
    if not spec.pure:
        digest.update(run_salt + node_id.encode())
    for name, source, slot in sorted(links_of(node)):
        digest.update(b"\x00" + name.encode() + b"\x00" + keys[source] + int(slot).to_bytes(4, "little", signed=True))
    return digest.digest()
