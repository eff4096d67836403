"""The resume bookkeeping of an unordered map: which pulled items were handed on.

An unordered map hands items on as they complete, so no single upstream state
describes "everything before this item and nothing after". Its resume state is the
upstream state before the oldest item not yet handed on, plus the keys handed on since
then; on resume those keys are skipped when they come round again.

The ledger keeps what that needs: every pulled item's ordinal with the upstream state
before it (in pull order), which ordinals were handed on, and the keys handed on. The
map stops pulling while the oldest pending item is far behind the newest pulled one, so
the key list in a state stays small however slow one item is.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from weft.data._node import Key

__all__ = ["HandOnLedger"]

#: How far (in multiples of the stage's in-flight limit) pulling may run ahead of the
#: oldest item not yet handed on. A state lists the keys handed on within that span, so
#: this bounds its size (8 x max_in_flight keys at most); an item slow enough to be
#: overtaken by eight windows of others holds pulling back until it completes.
SPAN_PER_LIMIT = 8
#: The handed-on keys are trimmed of those before the oldest pending item once the list
#: has grown past this many multiples of the limit (plus a constant, so a small limit
#: does not trim after every item): trimming costs a pass over the list, so doing it
#: only when the list has grown by a few windows keeps it amortised O(1) per item.
TRIM_PER_LIMIT = 4
TRIM_SLACK = 64


class HandOnLedger:
    """Pending and handed-on items of an unordered map, in pull order."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        #: (ordinal, upstream state before the item), in pull order
        self._pending: deque[tuple[int, Any]] = deque()
        #: ordinals handed on while an older item was still pending
        self._gone: set[int] = set()
        #: (ordinal, key) handed on, oldest first; trimmed as described above
        self._emitted: list[tuple[int, Key]] = []

    def set_limit(self, limit: int) -> None:
        self._limit = limit

    def pulled(self, ordinal: int, before: Any) -> None:
        """Item ``ordinal`` was pulled; ``before`` is the upstream state just before it."""
        self._pending.append((ordinal, before))

    def handed_on(self, ordinal: int, key: Key) -> None:
        self._gone.add(ordinal)
        self._emitted.append((ordinal, key))
        if len(self._emitted) > TRIM_PER_LIMIT * self._limit + TRIM_SLACK:
            self._trim(self.oldest())

    def oldest(self) -> int | None:
        """The ordinal of the oldest item pulled and not yet handed on, if any."""
        pending, gone = self._pending, self._gone
        while pending and pending[0][0] in gone:
            gone.discard(pending.popleft()[0])
        return pending[0][0] if pending else None

    def may_pull(self, next_ordinal: int) -> bool:
        """Whether pulling item ``next_ordinal`` keeps the span within its bound."""
        oldest = self.oldest()
        return oldest is None or next_ordinal - oldest < SPAN_PER_LIMIT * self._limit

    def resume_point(self, current: Any) -> tuple[Any, tuple[Key, ...]]:
        """The upstream state to resume from and the keys already handed on after it.

        ``current`` is the upstream state after the newest pulled item: the resume point
        when nothing is pending.
        """
        oldest = self.oldest()
        self._trim(oldest)
        if oldest is None:
            return current, ()
        return self._pending[0][1], tuple(k for _, k in self._emitted)

    def _trim(self, oldest: int | None) -> None:
        if oldest is None:
            self._emitted = []
        else:
            self._emitted = [(o, k) for o, k in self._emitted if o > oldest]
