"""Source nodes: random-access (resume by position) and streaming (resume by count).

A random-access source reads item ``i`` on demand, so sharding and shuffling it only
reorder *indices*: its order for an epoch is a ``range`` or an index array, and its
resume state is one integer. A streaming source (any iterable) is read front to back;
it resumes by re-opening the iterable and skipping what was already read (the JSON
Lines source does better: it seeks, see :mod:`weft.data._jsonl`; so do the Parquet
and WebDataset sources, read unit by unit: see :mod:`weft.data._units`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from weft.data._node import CountStates, Key, Node, NodeState
from weft.errors import ConfigError, ResumeError

if TYPE_CHECKING:
    from weft.data._build import OneShot

__all__ = ["IterableSource", "RandomAccessSource", "ShardOrder", "ShuffleOrder", "Transform", "apply_order"]


@dataclass(frozen=True)
class ShardOrder:
    """Keep every ``world_size``-th index of the order, starting at ``rank``."""

    rank: int
    world_size: int


@dataclass(frozen=True)
class ShuffleOrder:
    """A seeded permutation of the order, different every epoch."""

    seed: int


#: what a shard or shuffle folded into a random-access source does to its order
Transform = ShardOrder | ShuffleOrder


def apply_order(length: int, transforms: tuple[Transform, ...], epoch: int) -> Sequence[int]:
    """The source indices of one epoch, after every shard and shuffle, in order."""
    order: Any = range(length)
    for t in transforms:
        if isinstance(t, ShardOrder):
            order = order[t.rank::t.world_size]
        else:
            import numpy as np

            rng = np.random.default_rng([int(t.seed) & 0xFFFFFFFF, epoch])
            base = np.asarray(order, dtype=np.int64)
            order = base[rng.permutation(len(base))]
    return order  # type: ignore[no-any-return]


class RandomAccessSource(Node):
    """Items read by index; state is the position in this epoch's order."""

    kind = "source"

    def __init__(self, get: Callable[[int], Any], length: int, *, name: str,
                 transforms: tuple[Transform, ...] = ()) -> None:
        super().__init__(None, name=name)
        self._get = get
        self._length = length
        self._transforms = transforms
        self._epoch = 0
        self._order: Sequence[int] = apply_order(length, transforms, 0)
        self._pos = 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self._epoch:
            self._epoch = epoch
            if any(isinstance(t, ShuffleOrder) for t in self._transforms):
                self._order = apply_order(self._length, self._transforms, epoch)

    def __len__(self) -> int:
        return len(self._order)

    def next(self) -> tuple[Key, Any]:
        pos = self._pos
        if pos >= len(self._order):
            raise StopIteration
        index = int(self._order[pos])
        start = time.perf_counter()
        value = self._get(index)
        self.busy += time.perf_counter() - start
        self._pos = pos + 1
        self.items += 1
        return index, value

    def pull_run(self, n: int) -> tuple[Sequence[Key], list[Any], Sequence[Any]]:
        pos = self._pos
        order = self._order
        keys = [int(index) for index in order[pos:pos + n]]
        if not keys:
            raise StopIteration
        get = self._get
        values: list[Any] = []
        start = time.perf_counter()
        try:
            for index in keys:
                values.append(get(index))
        finally:  # a failing read stays the next item, as with next()
            self.busy += time.perf_counter() - start
            self._pos = pos + len(values)
            self.items += len(values)
        return keys, values, CountStates(pos, len(keys))

    def state(self) -> Any:
        return NodeState(self._pos, None)

    def restore(self, state: Any) -> None:
        pos = self.parts(state).own
        pos = 0 if pos is None else pos
        if not isinstance(pos, int) or not 0 <= pos <= len(self._order):
            raise ResumeError(f"source position {pos!r} is outside this source's {len(self._order)} items: "
                              "load a state saved from the same data")
        self._pos = pos


class IterableSource(Node):
    """Items from an iterable, front to back; state is how many were read.

    A one-shot iterator (a generator) cannot start over: ``one_shot`` counts what every
    pass took from it, so a new pass or epoch over it raises instead of yielding nothing,
    and a resume may only go on from exactly where the iterator is.
    """

    kind = "source"

    def __init__(self, iterable: Iterable[Any], *, name: str, one_shot: OneShot | None = None) -> None:
        super().__init__(None, name=name)
        self._iterable = iterable
        self._shot = one_shot
        self._it: Iterator[Any] | None = None
        self._count = 0

    def next(self) -> tuple[Key, Any]:
        if self._it is None:
            self._it = iter(self._iterable)
        start = time.perf_counter()
        value = next(self._it)
        self.busy += time.perf_counter() - start
        count = self._count
        self._count = count + 1
        if self._shot is not None:
            self._shot.taken += 1
        self.items += 1
        return count, value

    def pull_run(self, n: int) -> tuple[Sequence[Key], list[Any], Sequence[Any]]:
        if self._it is None:
            self._it = iter(self._iterable)
        values: list[Any] = []
        start = time.perf_counter()
        try:
            values.extend(itertools.islice(self._it, n))
        finally:  # what the iterator gave before it raised counts as read, as with next()
            self.busy += time.perf_counter() - start
            got = len(values)
            count = self._count
            self._count = count + got
            if self._shot is not None:
                self._shot.taken += got
            self.items += got
        if not got:
            raise StopIteration
        return list(range(count, count + got)), values, CountStates(count, got)

    def state(self) -> Any:
        return NodeState(self._count, None)

    def restore(self, state: Any) -> None:
        count = self.parts(state).own
        count = 0 if count is None else count
        if not isinstance(count, int) or count < 0:
            raise ResumeError(f"streaming source position {count!r} is not a count of items")
        shot = self._shot
        if shot is not None:
            if count == 0 and shot.taken:
                raise ConfigError(
                    f"{self.name}: this pipeline reads a one-shot iterator (a generator), and an earlier pass "
                    f"already took {shot.taken} items from it: it cannot start over for another pass or epoch. "
                    "Pass a list, or an object whose __iter__ starts a new iterator each time")
            if count != shot.taken:
                raise ResumeError(
                    f"cannot move a one-shot iterator from item {shot.taken} to item {count}: pass a "
                    "re-iterable object (a list, a Sequence or an object whose __iter__ starts over) to resume")
            self._count = count
            return
        self._it = iter(self._iterable)
        if count:
            skipped = sum(1 for _ in itertools.islice(self._it, count))
            if skipped < count:
                raise ResumeError(f"the iterable has only {skipped} items, the state says {count} were read")
        self._count = count
