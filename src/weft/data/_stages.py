"""The stages that run in the thread that pulls from them: filter, shard, batch,
unbatch, take and skip."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from weft.data._collate import default_collate, uncollate
from weft.data._node import Key, Node, NodeState, freeze
from weft.data._packing import collate_runs

__all__ = ["Batch", "Filter", "Skip", "StreamShard", "Take", "Unbatch"]


class Filter(Node):
    """Keeps the items for which ``pred(value)`` is true."""

    kind = "filter"
    delegates_state = True

    def __init__(self, up: Node, pred: Callable[[Any], Any], *, name: str | None = None) -> None:
        super().__init__(up, name=name)
        self._pred = pred

    def next(self) -> tuple[Key, Any]:
        up, pred = self.up, self._pred
        assert up is not None
        while True:
            key, value = up.next()
            start = time.perf_counter()
            keep = pred(value)
            self.busy += time.perf_counter() - start
            if keep:
                self.items += 1
                return key, value


class StreamShard(Node):
    """Keeps items whose source key falls in this rank's share (``key % world == rank``)."""

    kind = "shard"
    delegates_state = True

    def __init__(self, up: Node, rank: int, world_size: int) -> None:
        super().__init__(up)
        self._rank, self._world = rank, world_size

    def next(self) -> tuple[Key, Any]:
        up = self.up
        assert up is not None
        while True:
            key, value = up.next()
            if key % self._world == self._rank:  # type: ignore[operator]
                self.items += 1
                return key, value


class Batch(Node):
    """Groups ``size`` consecutive items; the batch's key is the tuple of their keys."""

    kind = "batch"
    delegates_state = True

    def __init__(self, up: Node, size: int, *, drop_last: bool,
                 collate: Callable[[Sequence[Any]], Any] | None) -> None:
        super().__init__(up)
        self._size = size
        self._drop_last = drop_last
        self._collate = collate or default_collate

    def next(self) -> tuple[Key, Any]:
        up = self.up
        assert up is not None
        keys, pieces = up.next_run(self._size)  # StopIteration when nothing is left
        if len(keys) < self._size and self._drop_last:
            raise StopIteration
        start = time.perf_counter()
        if self._collate is default_collate:
            # rows a worker already stacked are sliced or joined, not stacked again
            batch = collate_runs(pieces)
        else:
            one = len(pieces) == 1 and type(pieces[0]) is list
            batch = self._collate(pieces[0] if one else [v for piece in pieces for v in piece])
        self.busy += time.perf_counter() - start
        self.items += 1
        return tuple(keys), batch


class Unbatch(Node):
    """Splits each batch back into items.

    State: the upstream state before the current batch plus the keys of this batch
    already handed on; on resume the batch is read again and those keys skipped.
    """

    kind = "unbatch"

    def __init__(self, up: Node) -> None:
        super().__init__(up)
        self._cur: list[tuple[Key, Any]] = []
        self._pos = 0
        self._base: Any = None
        self._skip: set[Key] = set()

    def next(self) -> tuple[Key, Any]:
        up = self.up
        assert up is not None
        while True:
            if self._pos < len(self._cur):
                key, value = self._cur[self._pos]
                self._pos += 1
                if self._skip and key in self._skip:
                    self._skip.discard(key)
                    continue
                self.items += 1
                return key, value
            self._base = up.state()
            self._cur, self._pos = [], 0
            keys, batch = up.next()
            start = time.perf_counter()
            keys = keys if isinstance(keys, tuple) else (keys,)
            self._cur = list(zip(keys, uncollate(batch, len(keys)), strict=True))
            self.busy += time.perf_counter() - start

    def state(self) -> Any:
        up = self.up
        assert up is not None
        if self._pos >= len(self._cur):
            return NodeState(tuple(self._skip) or None, up.state())
        done = tuple(k for k, _ in self._cur[:self._pos])
        return NodeState(done + tuple(self._skip), self._base)

    def restore(self, state: Any) -> None:
        own, up_state = self.parts(state)
        self._cur, self._pos = [], 0
        self._skip = set(freeze(own) or ())
        assert self.up is not None
        self.up.restore(up_state)


class Take(Node):
    """Ends the epoch after ``n`` items."""

    kind = "take"

    def __init__(self, up: Node, n: int) -> None:
        super().__init__(up)
        self._n = n
        self._count = 0

    def next(self) -> tuple[Key, Any]:
        if self._count >= self._n:
            raise StopIteration
        assert self.up is not None
        item = self.up.next()
        self._count += 1
        self.items += 1
        return item

    def state(self) -> Any:
        assert self.up is not None
        return NodeState(self._count, self.up.state())

    def restore(self, state: Any) -> None:
        own, up_state = self.parts(state)
        self._count = 0 if own is None else int(own)
        assert self.up is not None
        self.up.restore(up_state)


class Skip(Node):
    """Drops the first ``n`` items of the epoch."""

    kind = "skip"

    def __init__(self, up: Node, n: int) -> None:
        super().__init__(up)
        self._n = n
        self._skipped = 0

    def next(self) -> tuple[Key, Any]:
        up = self.up
        assert up is not None
        while self._skipped < self._n:
            up.next()
            self._skipped += 1
        item = up.next()
        self.items += 1
        return item

    def state(self) -> Any:
        assert self.up is not None
        return NodeState(self._skipped, self.up.state())

    def restore(self, state: Any) -> None:
        own, up_state = self.parts(state)
        self._skipped = 0 if own is None else int(own)
        assert self.up is not None
        self.up.restore(up_state)
