"""Stage specifications (what the user chained) and how each becomes a running node."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from weft.data._node import Node

__all__ = ["Spec", "build_chain"]


@dataclass(frozen=True)
class Spec:
    """One stage as chained: its kind and its arguments (already validated)."""

    kind: str
    args: dict[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> Spec:
        return Spec(self.kind, {**self.args, **changes})


def _random(spec: Spec, up: Node | None) -> Node:
    from weft.data._sources import RandomAccessSource

    a = spec.args
    return RandomAccessSource(a["get"], a["length"], name=a["name"], transforms=a["transforms"])


def _iterable(spec: Spec, up: Node | None) -> Node:
    from weft.data._sources import IterableSource

    iterable: Iterable[Any] = spec.args["iterable"]
    return IterableSource(iterable, name=spec.args["name"])


def _jsonl(spec: Spec, up: Node | None) -> Node:
    from weft.data._jsonl import JsonlSource

    return JsonlSource(spec.args["path"])


def _map(spec: Spec, up: Node | None) -> Node:
    from weft.data._map import MapNode

    assert up is not None
    return MapNode(up, **spec.args)


def _filter(spec: Spec, up: Node | None) -> Node:
    from weft.data._stages import Filter

    assert up is not None
    return Filter(up, spec.args["pred"], name=spec.args["name"])


def _shard(spec: Spec, up: Node | None) -> Node:
    from weft.data._stages import StreamShard

    assert up is not None
    return StreamShard(up, spec.args["rank"], spec.args["world_size"])


def _shuffle(spec: Spec, up: Node | None) -> Node:
    from weft.data._shuffle import BufferShuffle

    assert up is not None
    return BufferShuffle(up, spec.args["buffer"], spec.args["seed"])


def _batch(spec: Spec, up: Node | None) -> Node:
    from weft.data._stages import Batch

    assert up is not None
    return Batch(up, spec.args["size"], drop_last=spec.args["drop_last"], collate=spec.args["collate"])


def _unbatch(spec: Spec, up: Node | None) -> Node:
    from weft.data._stages import Unbatch

    assert up is not None
    return Unbatch(up)


def _prefetch(spec: Spec, up: Node | None) -> Node:
    from weft.data._prefetch import Prefetch

    assert up is not None
    return Prefetch(up, spec.args["n"])


def _take(spec: Spec, up: Node | None) -> Node:
    from weft.data._stages import Take

    assert up is not None
    return Take(up, spec.args["n"])


def _skip(spec: Spec, up: Node | None) -> Node:
    from weft.data._stages import Skip

    assert up is not None
    return Skip(up, spec.args["n"])


_BUILDERS: dict[str, Callable[[Spec, Node | None], Node]] = {
    "random": _random, "iterable": _iterable, "jsonl": _jsonl, "map": _map, "filter": _filter,
    "shard": _shard, "shuffle": _shuffle, "batch": _batch, "unbatch": _unbatch,
    "prefetch": _prefetch, "take": _take, "skip": _skip,
}


def build_chain(specs: tuple[Spec, ...]) -> Node:
    """Nodes for ``specs``, source first; returns the last one."""
    node: Node | None = None
    for spec in specs:
        node = _BUILDERS[spec.kind](spec, node)
    assert node is not None
    return node
