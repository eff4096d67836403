"""The buffer shuffle, for streams that cannot be read by index.

(On a random-access source the pipeline folds ``shuffle`` into the source instead: a
full seeded permutation of the indices, no buffer, and a one-integer resume state.)

Randomness comes from a counter-based generator: draw ``k`` of epoch ``e`` is a hash
of ``(seed, e, k)``. So the RNG state is one integer and the order depends only on the
seed and the order items arrive in, never on timing or worker counts.

Resume state: the draw counter plus the buffered items themselves. That is the
documented trade-off for streaming sources, whose items cannot be read again by key:
keep ``buffer`` modest when items are large (shuffle records or paths, then decode).
Sources that can read an item again by key (Parquet, WebDataset: see
:mod:`weft.data._units`) get :class:`KeyedBufferShuffle`, whose state holds only the
keys of the buffered items; they are read again on resume.

A stage that looks ahead asks for the state after every item it pulls, so taking it
must not copy the buffer: the state is a :class:`BufferView`, the buffer as it was at
the last snapshot plus the operations since (a snapshot is taken every ``buffer``
operations, so the copying costs one operation's worth on average); the buffer's
contents are rebuilt only when the state is saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from weft.data._node import Key, Node, NodeState, freeze

__all__ = ["BufferShuffle", "BufferView", "KeyedBufferShuffle", "draw"]

_MASK = (1 << 64) - 1


def draw(seed: int, epoch: int, k: int, n: int) -> int:
    """A uniform integer in ``[0, n)`` for draw ``k`` (splitmix64 of the three counters)."""
    z = (seed * 0x9E3779B97F4A7C15 + (epoch + 1) * 0xD1B54A32D192ED03 + (k + 1) * 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return (z ^ (z >> 31)) % n


class BufferView:
    """The buffer's contents at one moment, rebuilt on demand: a snapshot plus the
    operations (an item put in, or the index drawn) that followed it."""

    __slots__ = ("_log", "_n", "_snapshot")

    def __init__(self, snapshot: tuple[tuple[Key, Any], ...], log: list[Any], n: int) -> None:
        self._snapshot, self._log, self._n = snapshot, log, n

    def items(self) -> list[tuple[Key, Any]]:
        buf = list(self._snapshot)
        for op in self._log[:self._n]:
            if type(op) is int:
                buf[op] = buf[-1]
                buf.pop()
            else:
                buf.append(op)
        return buf


class BufferShuffle(Node):
    """Fills a buffer of ``size`` items and hands on a random one each time."""

    kind = "shuffle"

    def __init__(self, up: Node, size: int, seed: int) -> None:
        super().__init__(up)
        self._size = size
        self._seed = seed
        self._epoch = 0
        self._draws = 0
        self._exhausted = False
        self._reset([])

    def _reset(self, buf: list[tuple[Key, Any]]) -> None:
        self._buf = buf
        self._snapshot: tuple[tuple[Key, Any], ...] = tuple(buf)
        self._log: list[Any] = []  # a new list: views of the old one keep it as it was

    def set_epoch(self, epoch: int) -> None:
        self._epoch = epoch
        super().set_epoch(epoch)

    def next(self) -> tuple[Key, Any]:
        buf, log = self._buf, self._log
        if not self._exhausted:
            up = self.up
            assert up is not None
            try:
                while len(buf) < self._size:
                    item = up.next()
                    buf.append(item)
                    log.append(item)
            except StopIteration:
                self._exhausted = True
        if not buf:
            raise StopIteration
        j = draw(self._seed, self._epoch, self._draws, len(buf))
        self._draws += 1
        item = buf[j]
        buf[j] = buf[-1]
        buf.pop()
        log.append(j)
        if len(log) > max(self._size, 64):
            self._reset(buf)
        self.items += 1
        return item

    def state(self) -> Any:
        assert self.up is not None
        view = BufferView(self._snapshot, self._log, len(self._log))
        return NodeState((self._draws, self._exhausted, view), self.up.state())

    def restore(self, state: Any) -> None:
        own, up_state = self.parts(state)
        assert self.up is not None
        self.up.restore(up_state)
        if own is None:
            self._draws, self._exhausted = 0, False
            self._reset([])
            return
        draws, exhausted, buf = own
        self._draws, self._exhausted = int(draws), bool(exhausted)
        self._reset(buf.items() if isinstance(buf, BufferView) else self._saved_items(buf))

    def _saved_items(self, saved: Any) -> list[tuple[Key, Any]]:
        """The buffer from its saved form (after the upstream is restored)."""
        return [(freeze(k), v) for k, v in saved]

    def _saved_form(self, items: list[tuple[Key, Any]]) -> Any:
        return list(items)

    def export(self, state: Any) -> dict[str, Any]:
        out = super().export(state)
        if "state" in out:
            draws, exhausted, view = out["state"]
            items = view.items() if isinstance(view, BufferView) else view
            out["state"] = (draws, exhausted, self._saved_form(items))
        return out

    def _extra_statistics(self) -> dict[str, Any]:
        return {"extra": {"buffered": float(len(self._buf))}}


class Refetching(Protocol):
    """A node that reads items again by key."""

    def fetch(self, keys: Sequence[Key]) -> list[Any]: ...


class KeyedBufferShuffle(BufferShuffle):
    """A buffer shuffle right after a source that reads items again by key: its saved
    state lists the keys of the buffered items, and resume reads them again."""

    def __init__(self, up: Node, size: int, seed: int) -> None:
        assert hasattr(up, "fetch"), "a keyed buffer shuffle needs a source that reads items by key"
        super().__init__(up, size, seed)

    def _saved_form(self, items: list[tuple[Key, Any]]) -> Any:
        return [key for key, _ in items]

    def _saved_items(self, saved: Any) -> list[tuple[Key, Any]]:
        keys = [freeze(k) for k in saved]
        up: Refetching = self.up  # type: ignore[assignment]
        return list(zip(keys, up.fetch(keys), strict=True)) if keys else []
