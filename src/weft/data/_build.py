"""Stage specifications (what the user chained) and how each becomes a running node.

One frozen dataclass per kind of stage holds its arguments, already validated by the
:class:`~weft.data.Pipeline` method that made it; ``build`` makes the running node.
Node modules are imported on first build, so building a pipeline imports only what it
runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from weft.data._node import Node
    from weft.data._sources import Transform

__all__ = [
    "BatchSpec",
    "FilterSpec",
    "IterableSourceSpec",
    "JsonlSourceSpec",
    "MapSpec",
    "PrefetchSpec",
    "RandomSourceSpec",
    "ShardSpec",
    "ShuffleSpec",
    "SkipSpec",
    "Spec",
    "TakeSpec",
    "UnbatchSpec",
    "build_chain",
]


class Spec(Protocol):
    """One stage as chained: its kind, and how to start it on top of ``up``."""

    kind: ClassVar[str]

    def build(self, up: Node | None) -> Node: ...


@dataclass(frozen=True, kw_only=True)
class RandomSourceSpec:
    """Items read by index, in the order its shard and shuffle transforms give."""

    kind: ClassVar[str] = "random"
    get: Callable[[int], Any]
    length: int
    name: str
    transforms: tuple[Transform, ...] = ()

    def build(self, up: Node | None) -> Node:
        from weft.data._sources import RandomAccessSource

        return RandomAccessSource(self.get, self.length, name=self.name, transforms=self.transforms)


@dataclass(frozen=True, kw_only=True)
class IterableSourceSpec:
    kind: ClassVar[str] = "iterable"
    iterable: Iterable[Any]
    name: str

    def build(self, up: Node | None) -> Node:
        from weft.data._sources import IterableSource

        return IterableSource(self.iterable, name=self.name)


@dataclass(frozen=True, kw_only=True)
class JsonlSourceSpec:
    kind: ClassVar[str] = "jsonl"
    path: str

    def build(self, up: Node | None) -> Node:
        from weft.data._jsonl import JsonlSource

        return JsonlSource(self.path)


@dataclass(frozen=True, kw_only=True)
class MapSpec:
    """``fn`` on every item; ``backend`` is a registered weft.exec backend name."""

    kind: ClassVar[str] = "map"
    fn: Callable[[Any], Any]
    workers: int
    backend: str
    ordered: bool
    max_in_flight: int | None
    on_error: str
    retries: int
    name: str
    #: keyword arguments of weft.exec.create beyond ``workers`` (a cluster's ``resources=``,
    #: ``address=``, ``max_retries=``, ``timeout=``), as sorted pairs
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def unordered(self) -> bool:
        """Whether results are handed on as they complete (serial maps never reorder)."""
        return not self.ordered and self.backend != "serial"

    def build(self, up: Node | None) -> Node:
        from weft.data._map import MapNode

        assert up is not None
        return MapNode(up, self)


@dataclass(frozen=True, kw_only=True)
class FilterSpec:
    kind: ClassVar[str] = "filter"
    pred: Callable[[Any], Any]
    name: str

    def build(self, up: Node | None) -> Node:
        from weft.data._stages import Filter

        assert up is not None
        return Filter(up, self.pred, name=self.name)


@dataclass(frozen=True, kw_only=True)
class ShardSpec:
    kind: ClassVar[str] = "shard"
    rank: int
    world_size: int

    def build(self, up: Node | None) -> Node:
        from weft.data._stages import StreamShard

        assert up is not None
        return StreamShard(up, self.rank, self.world_size)


@dataclass(frozen=True, kw_only=True)
class ShuffleSpec:
    kind: ClassVar[str] = "shuffle"
    buffer: int
    seed: int

    def build(self, up: Node | None) -> Node:
        from weft.data._shuffle import BufferShuffle

        assert up is not None
        return BufferShuffle(up, self.buffer, self.seed)


@dataclass(frozen=True, kw_only=True)
class BatchSpec:
    kind: ClassVar[str] = "batch"
    size: int
    drop_last: bool
    collate: Callable[[Sequence[Any]], Any] | None

    def build(self, up: Node | None) -> Node:
        from weft.data._stages import Batch

        assert up is not None
        return Batch(up, self.size, drop_last=self.drop_last, collate=self.collate)


@dataclass(frozen=True, kw_only=True)
class UnbatchSpec:
    kind: ClassVar[str] = "unbatch"

    def build(self, up: Node | None) -> Node:
        from weft.data._stages import Unbatch

        assert up is not None
        return Unbatch(up)


@dataclass(frozen=True, kw_only=True)
class PrefetchSpec:
    kind: ClassVar[str] = "prefetch"
    n: int

    def build(self, up: Node | None) -> Node:
        from weft.data._prefetch import Prefetch

        assert up is not None
        return Prefetch(up, self.n)


@dataclass(frozen=True, kw_only=True)
class TakeSpec:
    kind: ClassVar[str] = "take"
    n: int

    def build(self, up: Node | None) -> Node:
        from weft.data._stages import Take

        assert up is not None
        return Take(up, self.n)


@dataclass(frozen=True, kw_only=True)
class SkipSpec:
    kind: ClassVar[str] = "skip"
    n: int

    def build(self, up: Node | None) -> Node:
        from weft.data._stages import Skip

        assert up is not None
        return Skip(up, self.n)


def build_chain(specs: tuple[Spec, ...]) -> Node:
    """Nodes for ``specs``, source first; returns the last one."""
    node: Node | None = None
    for spec in specs:
        node = spec.build(node)
    assert node is not None
    return node
