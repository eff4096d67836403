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
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import Any

from weft.data._stats import StageStats
from weft.errors import ResumeError

__all__ = ["Key", "Node"]

Key = Hashable


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

    # -- resume ----------------------------------------------------------------------
    def state(self) -> Any:
        assert self.up is not None
        return self.up.state()

    def restore(self, state: Any) -> None:
        """Go back to ``state`` (``None``: the start of the epoch)."""
        assert self.up is not None
        self.up.restore(state)

    def export(self, state: Any) -> dict[str, Any]:
        """``state`` as nested plain data: this stage's part plus its upstream's."""
        out: dict[str, Any] = {"stage": self.kind}
        if self.delegates_state:
            own, up_state = None, state
        else:
            own, up_state = state if state is not None else (None, None)
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
        return (own, up_state)

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
    def stats(self, now: float) -> StageStats:
        elapsed = max(now - self.started, 1e-9)
        fields: dict[str, Any] = dict(
            index=self.index, name=self.name, kind=self.kind, items=self.items,
            items_per_second=self.items / elapsed, busy_fraction=min(1.0, self.busy / elapsed),
            wait_upstream_seconds=self.wait_up, wait_downstream_seconds=self.wait_down,
            elapsed_seconds=elapsed,
        )
        fields.update(self._extra_stats())
        return StageStats(**fields)

    def _extra_stats(self) -> dict[str, Any]:
        return {}

    def reset_stats(self) -> None:
        self.items = 0
        self.busy = self.wait_up = self.wait_down = 0.0
        self.started = time.perf_counter()
