"""The buffer shuffle, for streams that cannot be read by index.

(On a random-access source the pipeline folds ``shuffle`` into the source instead: a
full seeded permutation of the indices, no buffer, and a one-integer resume state.)

Randomness comes from a counter-based generator: draw ``k`` of epoch ``e`` is a hash
of ``(seed, e, k)``. So the RNG state is one integer and the order depends only on the
seed and the order items arrive in, never on timing or worker counts.

Resume state: the draw counter plus the buffered items themselves. That is the
documented trade-off for streaming sources, whose items cannot be read again by key:
keep ``buffer`` modest when items are large (shuffle records or paths, then decode).
"""

from __future__ import annotations

from typing import Any

from weft.data._node import Key, Node, NodeState, freeze

__all__ = ["BufferShuffle", "draw"]

_MASK = (1 << 64) - 1


def draw(seed: int, epoch: int, k: int, n: int) -> int:
    """A uniform integer in ``[0, n)`` for draw ``k`` (splitmix64 of the three counters)."""
    z = (seed * 0x9E3779B97F4A7C15 + (epoch + 1) * 0xD1B54A32D192ED03 + (k + 1) * 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return (z ^ (z >> 31)) % n


class BufferShuffle(Node):
    """Fills a buffer of ``size`` items and hands on a random one each time."""

    kind = "shuffle"

    def __init__(self, up: Node, size: int, seed: int) -> None:
        super().__init__(up)
        self._size = size
        self._seed = seed
        self._epoch = 0
        self._buf: list[tuple[Key, Any]] = []
        self._draws = 0
        self._exhausted = False

    def set_epoch(self, epoch: int) -> None:
        self._epoch = epoch
        super().set_epoch(epoch)

    def next(self) -> tuple[Key, Any]:
        buf = self._buf
        if not self._exhausted:
            up = self.up
            assert up is not None
            try:
                while len(buf) < self._size:
                    buf.append(up.next())
            except StopIteration:
                self._exhausted = True
        if not buf:
            raise StopIteration
        j = draw(self._seed, self._epoch, self._draws, len(buf))
        self._draws += 1
        item = buf[j]
        buf[j] = buf[-1]
        buf.pop()
        self.items += 1
        return item

    def state(self) -> Any:
        assert self.up is not None
        return NodeState((self._draws, self._exhausted, list(self._buf)), self.up.state())

    def restore(self, state: Any) -> None:
        own, up_state = self.parts(state)
        if own is None:
            self._draws, self._exhausted, self._buf = 0, False, []
        else:
            draws, exhausted, buf = own
            self._draws, self._exhausted = int(draws), bool(exhausted)
            self._buf = [(freeze(k), v) for k, v in buf]
        assert self.up is not None
        self.up.restore(up_state)

    def _extra_statistics(self) -> dict[str, Any]:
        return {"extra": {"buffered": float(len(self._buf))}}
