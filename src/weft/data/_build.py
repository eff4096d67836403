"""Stage specifications (what the user chained) and how each becomes a running node.

One frozen dataclass per kind of stage holds its arguments, already validated by the
:class:`~weft.data.Pipeline` method that made it; ``build`` makes the running node.
Node modules are imported on first build, so building a pipeline imports only what it
runs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from weft._checks import check_int
from weft.errors import ConfigError

if TYPE_CHECKING:
    from weft.data._node import Node
    from weft.data._parquet import ParquetCatalog
    from weft.data._sources import Transform

__all__ = [
    "FOLDABLE_SOURCES",
    "BatchSpec",
    "FilterSpec",
    "IterableSourceSpec",
    "JsonlSourceSpec",
    "MapSpec",
    "OneShot",
    "ParquetSourceSpec",
    "PrefetchSpec",
    "RandomSourceSpec",
    "ShardSpec",
    "ShuffleSpec",
    "SkipSpec",
    "Spec",
    "TakeSpec",
    "UnbatchSpec",
    "WebDatasetSourceSpec",
    "build_chain",
    "chain_length",
    "check_workers",
]


class Spec(Protocol):
    """One stage as chained: its kind, how to start it on top of ``up``, and how it
    reads in a pipeline's repr."""

    kind: ClassVar[str]

    def build(self, up: Node | None) -> Node: ...

    def describe(self) -> str: ...


def _transforms_text(transforms: tuple[Transform, ...]) -> str:
    from weft.data._sources import ShardOrder

    return "".join(f" -> shard({t.rank}, {t.world_size})" if isinstance(t, ShardOrder)
                   else f" -> shuffle(seed={t.seed})" for t in transforms)


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

    def fold(self, transform: Transform, buffer: int) -> RandomSourceSpec:
        """This source with ``transform`` applied to its order (a shuffle needs no buffer)."""
        return dataclasses.replace(self, transforms=self.transforms + (transform,))

    def describe(self) -> str:
        return f"{self.name}[{self.length}]{_transforms_text(self.transforms)}"


class OneShot:
    """How many items passes have taken from a one-shot iterator (a generator): it cannot
    start over, so a later pass may only go on from exactly there."""

    def __init__(self) -> None:
        self.taken = 0


@dataclass(frozen=True, kw_only=True)
class IterableSourceSpec:
    kind: ClassVar[str] = "iterable"
    iterable: Iterable[Any]
    name: str
    #: set when ``iterable`` is its own iterator: shared by every pass over it
    one_shot: OneShot | None = None

    def build(self, up: Node | None) -> Node:
        from weft.data._sources import IterableSource

        return IterableSource(self.iterable, name=self.name, one_shot=self.one_shot)

    def describe(self) -> str:
        return f"{self.name} (one-shot stream)" if self.one_shot else f"{self.name} (stream)"


@dataclass(frozen=True, kw_only=True)
class JsonlSourceSpec:
    kind: ClassVar[str] = "jsonl"
    path: str

    def build(self, up: Node | None) -> Node:
        from weft.data._jsonl import JsonlSource

        return JsonlSource(self.path)

    def describe(self) -> str:
        return f"jsonl({self.path!r})"


def _with_buffer_shuffle(node: Node, transforms: tuple[Transform, ...], buffer: int) -> Node:
    """``node``, followed by a keyed buffer shuffle seeded by the last shuffle folded in."""
    from weft.data._sources import ShuffleOrder

    seeds = [t.seed for t in transforms if isinstance(t, ShuffleOrder)]
    if not seeds:
        return node
    from weft.data._shuffle import KeyedBufferShuffle

    return KeyedBufferShuffle(node, buffer, seeds[-1])


@dataclass(frozen=True, kw_only=True)
class ParquetSourceSpec:
    """Row groups of Parquet files (see :mod:`weft.data._parquet`); a folded shuffle
    permutes the row groups and buffer-shuffles the items."""

    kind: ClassVar[str] = "parquet"
    catalog: ParquetCatalog
    rows: bool
    batch_rows: int
    on_error: str
    transforms: tuple[Transform, ...] = ()
    buffer: int = 1

    def build(self, up: Node | None) -> Node:
        from weft.data._parquet import ParquetSource

        node = ParquetSource(self.catalog, rows=self.rows, batch_rows=self.batch_rows,
                             transforms=self.transforms, on_error=self.on_error)
        return _with_buffer_shuffle(node, self.transforms, self.buffer)

    def fold(self, transform: Transform, buffer: int) -> ParquetSourceSpec:
        return dataclasses.replace(self, transforms=self.transforms + (transform,),
                                   buffer=max(self.buffer, buffer))

    def describe(self) -> str:
        return (f"parquet({self.catalog.label!r}, rows={'dicts' if self.rows else 'batches'!r})"
                f"{_transforms_text(self.transforms)}")


@dataclass(frozen=True, kw_only=True)
class WebDatasetSourceSpec:
    """Samples of tar shards (see :mod:`weft.data._webdataset`); a folded shuffle
    permutes the shards and buffer-shuffles the samples."""

    kind: ClassVar[str] = "webdataset"
    shards: tuple[str, ...]
    decoders: tuple[tuple[str, Callable[[bytes], Any]], ...]
    on_error: str
    name: str
    transforms: tuple[Transform, ...] = ()
    buffer: int = 1

    def build(self, up: Node | None) -> Node:
        from weft.data._webdataset import WebDatasetSource

        node = WebDatasetSource(self.shards, decoders=dict(self.decoders), transforms=self.transforms,
                                on_error=self.on_error, name=self.name)
        return _with_buffer_shuffle(node, self.transforms, self.buffer)

    def fold(self, transform: Transform, buffer: int) -> WebDatasetSourceSpec:
        return dataclasses.replace(self, transforms=self.transforms + (transform,),
                                   buffer=max(self.buffer, buffer))

    def describe(self) -> str:
        decoded = f", decode={[ext for ext, _ in self.decoders]}" if self.decoders else ""
        return f"webdataset({len(self.shards)} shards{decoded}){_transforms_text(self.transforms)}"


#: sources that sharding and shuffling fold into (their order), instead of adding a stage
FOLDABLE_SOURCES = (RandomSourceSpec, ParquetSourceSpec, WebDatasetSourceSpec)


@dataclass(frozen=True, kw_only=True)
class MapSpec:
    """``fn`` on every item; ``backend`` is a registered weft.exec backend name.

    With ``auto_workers`` (``workers="auto"``), ``workers`` is the count a thread stage
    starts from (and the count on other backends) and ``max_workers`` its ceiling.
    """

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
    auto_workers: bool = False
    max_workers: int | None = None
    #: the size of the batches the next stage makes with the default collate, 0 when the
    #: next stage is no such batch: set by :func:`build_chain`, never by the user. Workers
    #: then stack their chunk's results one array per field (on threads too, so the
    #: batch's stacking runs in parallel) and chunks hold whole batches, so that a batch
    #: is one slice of one chunk.
    collated_batch: int = 0

    @property
    def unordered(self) -> bool:
        """Whether results are handed on as they complete (serial maps never reorder)."""
        return not self.ordered and self.backend != "serial"

    def build(self, up: Node | None) -> Node:
        from weft.data._map import MapNode

        assert up is not None
        return MapNode(up, self)

    def describe(self) -> str:
        workers = "'auto'" if self.auto_workers else str(self.workers)
        text = f"map({self.name}, workers={workers}, backend={self.backend!r}"
        if not self.ordered:
            text += ", ordered=False"
        if self.on_error != "raise":
            text += f", on_error={self.on_error!r}"
        return text + ")"


@dataclass(frozen=True, kw_only=True)
class FilterSpec:
    kind: ClassVar[str] = "filter"
    pred: Callable[[Any], Any]
    name: str

    def build(self, up: Node | None) -> Node:
        from weft.data._stages import Filter

        assert up is not None
        return Filter(up, self.pred, name=self.name)

    def describe(self) -> str:
        return f"filter({self.name})"


@dataclass(frozen=True, kw_only=True)
class ShardSpec:
    kind: ClassVar[str] = "shard"
    rank: int
    world_size: int

    def build(self, up: Node | None) -> Node:
        from weft.data._stages import StreamShard

        assert up is not None
        return StreamShard(up, self.rank, self.world_size)

    def describe(self) -> str:
        return f"shard({self.rank}, {self.world_size})"


@dataclass(frozen=True, kw_only=True)
class ShuffleSpec:
    kind: ClassVar[str] = "shuffle"
    buffer: int
    seed: int

    def build(self, up: Node | None) -> Node:
        from weft.data._shuffle import BufferShuffle

        assert up is not None
        return BufferShuffle(up, self.buffer, self.seed)

    def describe(self) -> str:
        return f"shuffle(buffer={self.buffer}, seed={self.seed})"


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

    def describe(self) -> str:
        text = f"batch({self.size}"
        if self.drop_last:
            text += ", drop_last=True"
        if self.collate is not None:
            text += f", collate={getattr(self.collate, '__name__', type(self.collate).__name__)}"
        return text + ")"


@dataclass(frozen=True, kw_only=True)
class UnbatchSpec:
    kind: ClassVar[str] = "unbatch"

    def build(self, up: Node | None) -> Node:
        from weft.data._stages import Unbatch

        assert up is not None
        return Unbatch(up)

    def describe(self) -> str:
        return "unbatch()"


@dataclass(frozen=True, kw_only=True)
class PrefetchSpec:
    kind: ClassVar[str] = "prefetch"
    n: int

    def build(self, up: Node | None) -> Node:
        from weft.data._prefetch import Prefetch

        assert up is not None
        return Prefetch(up, self.n)

    def describe(self) -> str:
        return f"prefetch({self.n})"


@dataclass(frozen=True, kw_only=True)
class TakeSpec:
    kind: ClassVar[str] = "take"
    n: int

    def build(self, up: Node | None) -> Node:
        from weft.data._stages import Take

        assert up is not None
        return Take(up, self.n)

    def describe(self) -> str:
        return f"take({self.n})"


@dataclass(frozen=True, kw_only=True)
class SkipSpec:
    kind: ClassVar[str] = "skip"
    n: int

    def build(self, up: Node | None) -> Node:
        from weft.data._stages import Skip

        assert up is not None
        return Skip(up, self.n)

    def describe(self) -> str:
        return f"skip({self.n})"


def check_workers(workers: Any, max_workers: Any) -> tuple[int | None, int | None]:
    """A map's ``workers`` and ``max_workers`` checked: (a count or None for "auto", the
    ceiling of "auto" or None). ``workers=None`` is the usable cores."""
    if isinstance(workers, str) and workers == "auto":
        from weft.data._sizing import DEFAULT_MAX_THREADS

        return None, check_int("max_workers", DEFAULT_MAX_THREADS if max_workers is None else max_workers)
    if max_workers is not None:
        raise ConfigError(f"max_workers={max_workers!r} caps workers='auto'; with workers={workers!r} it has no "
                          "effect: drop it, or pass workers='auto'")
    if workers is None:
        return _usable_cores(), None
    try:
        return check_int("workers", workers, minimum=0), None
    except ConfigError:
        raise ConfigError(f"workers must be an integer >= 0 (0 runs the map inline) or 'auto' (threads that "
                          f"grow while throughput rises, for work that waits), got {workers!r}") from None


def _usable_cores() -> int:
    from weft import runtime

    return runtime.usable_cores()


def _collated_batch(spec: Spec | None) -> int:
    """The batch size of ``spec`` if it is a batch stage with the default collate, else 0."""
    from weft.data._collate import default_collate

    if isinstance(spec, BatchSpec) and spec.collate in (None, default_collate):
        return spec.size
    return 0


def build_chain(specs: tuple[Spec, ...]) -> Node:
    """Nodes for ``specs``, source first; returns the last one.

    A map directly followed by a batch stage with the default collate is told so
    (:attr:`MapSpec.collated_batch`): its workers then collate.
    """
    node: Node | None = None
    for i, spec in enumerate(specs):
        if isinstance(spec, MapSpec):
            spec = dataclasses.replace(spec, collated_batch=_collated_batch(specs[i + 1] if i + 1 < len(specs) else None))
        node = spec.build(node)
    assert node is not None
    return node


def chain_length(specs: tuple[Spec, ...]) -> int:
    """How many items one epoch of ``specs`` yields; TypeError when only reading tells."""
    from weft.data._sources import ShardOrder

    source = specs[0]
    if not isinstance(source, RandomSourceSpec):
        raise TypeError(f"len() needs a random-access source (from_range, from_array, from_npy, from_files, "
                        f"from_image_folder or a Sequence): {source.describe()} is read as a stream, "
                        "so its length is known only once read")
    n = source.length
    for t in source.transforms:
        if isinstance(t, ShardOrder):
            n = len(range(n)[t.rank::t.world_size])
    for spec in specs[1:]:
        if isinstance(spec, (PrefetchSpec, ShuffleSpec)) or (isinstance(spec, MapSpec) and spec.on_error != "skip"):
            continue
        if isinstance(spec, BatchSpec):
            n = n // spec.size if spec.drop_last else math.ceil(n / spec.size)
        elif isinstance(spec, TakeSpec):
            n = min(n, spec.n)
        elif isinstance(spec, SkipSpec):
            n = max(0, n - spec.n)
        else:
            raise TypeError(f"len() of this pipeline is unknown until it is read: {spec.describe()} "
                            "can drop or split items")
    return n
