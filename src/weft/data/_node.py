"""The running form of a pipeline: a chain of nodes, each pulling from the one before.

Every item travels as ``(key, value)``. The key identifies the item in its source (a
source index for random-access sources, a line or item ordinal for streaming ones; a
batch's key is the tuple of its items' keys), so errors can name the item and resume
can recognise it.

Exact resume works like Grain's iterators: ``state()`` describes the node's position
*after the last item it returned*, as a small immutable value, and ``restore(state)``
puts the node back there. A node that looks ahead (a map with workers, a prefetch)
records its upstream's ``state()`` next to every item it pulls, and reports the
recorded one when it hands the item on. Nodes that only work in the caller's thread
(filter, batch, ...) simply report their upstream's current state. A node's
``state()`` is only ever called from the thread that calls its ``next()``.

A node that keeps something of its own reports a :class:`NodeState`: its own part
(plain data: numbers, tuples, lists) and its upstream's state. A node that keeps
nothing (``delegates_state``) reports its upstream's state as it is.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from typing import Any, NamedTuple

from weft.data._stats import StageStatistics
from weft.errors import ResumeError

__all__ = ["CountStates", "Key", "Node", "NodeState", "freeze"]

Key = Hashable


def freeze(value: Any) -> Any:
    """Lists (from a JSON round trip of a state) back to tuples, so keys are hashable again."""
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value


class NodeState(NamedTuple):
    """One node's resume state: its own part and the state of the node before it."""

    #: this node's position (plain data), or None when it is at the start
    own: Any
    #: the upstream node's state (None for a source, or for an upstream at its start)
    upstream: Any


class CountStates(Sequence[NodeState]):
    """The states after each item of a run that a source whose state is a count of items
    (``NodeState(count, None)``) handed out from ``first``: made when asked for, not per item."""

    __slots__ = ("_first", "_n")

    def __init__(self, first: int, n: int) -> None:
        self._first = first
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(i)
        return NodeState(self._first + i + 1, None)


class Node:
    """One stage of a running pipeline."""

    kind = "node"
    #: True when ``state()`` is the upstream's state (the node keeps nothing of its own).
    delegates_state = False

    def __init__(self, up: Node | None, *, name: str | None = None) -> None:
        self.up = up
        self.name = name or self.kind
        self.index: int = 0 if up is None else up.index + 1
        self.items = 0
        self.busy = 0.0
        self.wait_up = 0.0
        self.wait_down = 0.0
        self.started = time.perf_counter()

    # -- iteration -------------------------------------------------------------------
    def next(self) -> tuple[Key, Any]:
        """The next ``(key, value)``; raises StopIteration at the end of the epoch."""
        raise NotImplementedError

    def next_run(self, n: int) -> tuple[list[Key], list[Any]]:
        """Up to ``n`` items (fewer only at the end of the epoch) as keys and pieces.

        A piece is a list of values or (from a map stage whose workers packed their
        chunks) an array whose rows are the values or a
        :class:`~weft.data._packing.PackedRows`. Raises StopIteration when no item is left.
        This default calls :meth:`next` up to ``n`` times and returns one list.
        """
        keys, values = self._next_each(n)
        return keys, [values]

    def pull_run(self, n: int) -> tuple[Sequence[Key], list[Any], Sequence[Any]]:
        """Up to ``n`` items as their keys, their values and this node's :meth:`state`
        right after each, for a stage that looks ahead (a map filling a chunk): fewer
        only when no item is left this epoch, StopIteration when none was.

        This default calls :meth:`next` and :meth:`state` per item; a source overrides it
        to hand out a run at once. Another exception propagates as from :meth:`next`: the
        items of the run before the failing one were read, as that many calls of
        :meth:`next` would have read them.
        """
        states: list[Any] = []
        keys, values = self._next_each(n, states)
        return keys, values, states

    def _next_each(self, n: int, states: list[Any] | None = None) -> tuple[list[Key], list[Any]]:
        """:meth:`next` up to ``n`` times (fewer only at the end of the epoch, StopIteration
        when no item is left), with :meth:`state` after each appended to ``states`` if given."""
        keys: list[Key] = []
        values: list[Any] = []
        try:
            for _ in range(n):
                key, value = self.next()
                keys.append(key)
                values.append(value)
                if states is not None:
                    states.append(self.state())
        except StopIteration:
            if not keys:
                raise
        return keys, values

    # -- resume ----------------------------------------------------------------------
    def state(self) -> Any:
        assert self.up is not None
        return self.up.state()

    def restore(self, state: Any) -> None:
        """Go back to ``state`` (``None``: the start of the epoch)."""
        assert self.up is not None
        self.up.restore(state)

    @staticmethod
    def parts(state: Any) -> NodeState:
        """``state`` (a NodeState, or None at the start) as its two parts."""
        return NodeState(None, None) if state is None else NodeState(*state)

    def export(self, state: Any) -> dict[str, Any]:
        """``state`` as nested plain data: this stage's part plus its upstream's."""
        out: dict[str, Any] = {"stage": self.kind}
        if self.delegates_state:
            own, up_state = None, state
        else:
            own, up_state = self.parts(state)
        if own is not None:
            out["state"] = own
        if self.up is not None:
            out["upstream"] = self.up.export(up_state)
        return out

    def load(self, data: Any) -> Any:
        """The inverse of :meth:`export`; raises ResumeError when the shape differs."""
        if not isinstance(data, dict) or data.get("stage") != self.kind:
            found = data.get("stage") if isinstance(data, dict) else type(data).__name__
            raise ResumeError(f"the state_dict has stage {found!r} where this pipeline has stage "
                              f"{self.index} {self.kind!r}: load a state saved from the same pipeline")
        up_state = self.up.load(data.get("upstream")) if self.up is not None else None
        if self.delegates_state:
            return up_state
        own = data.get("state")
        if own is None and up_state is None:
            return None
        return NodeState(own, up_state)

    # -- lifecycle -------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        if self.up is not None:
            self.up.set_epoch(epoch)

    def interrupt(self) -> None:
        """Wake anything blocked in this chain (callable from any thread); close() follows."""
        if self.up is not None:
            self.up.interrupt()

    def close(self) -> None:
        """Release workers and files. Only called once no other thread uses the chain."""
        if self.up is not None:
            self.up.close()

    def chain(self) -> list[Node]:
        """Every node from the source to this one."""
        nodes: list[Node] = []
        node: Node | None = self
        while node is not None:
            nodes.append(node)
            node = node.up
        return nodes[::-1]

    # -- statistics ------------------------------------------------------------------
    def statistics(self, now: float) -> StageStatistics:
        elapsed = max(now - self.started, 1e-9)
        fields: dict[str, Any] = dict(
            index=self.index, name=self.name, kind=self.kind, items=self.items,
            items_per_second=self.items / elapsed, busy_fraction=min(1.0, self.busy / elapsed),
            wait_upstream_seconds=self.wait_up, wait_downstream_seconds=self.wait_down,
            elapsed_seconds=elapsed,
        )
        fields.update(self._extra_statistics())
        return StageStatistics(**fields)

    def _extra_statistics(self) -> dict[str, Any]:
        return {}
