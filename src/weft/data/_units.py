"""Sources read unit by unit: Parquet row groups, WebDataset tar shards.

Such a source cannot read one item by index cheaply, but it can start any *unit* (a
row group, a shard) and seek inside it. So sharding and shuffling act on units, as
they act on indices of a random-access source: ``.shard(rank, world_size)`` keeps every
``world_size``-th unit of the order (disjoint and complete shares), ``.shuffle()``
permutes the units every epoch (seeded) and adds a buffer shuffle of the items.

The position is ``(pos, unit, offset)``: the index into this epoch's unit order, the
identity of the unit there (checked on resume, so a state saved on other data or
other shard settings is refused instead of read wrongly) and how far into that unit
the items already handed on reach (rows, or a byte offset). Resume starts that unit
at that offset: nothing before it is read again.

A unit source also reads given items again by key (:meth:`UnitSource.fetch`), which
lets its buffer shuffle keep keys, not items, in its resume state.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from weft.data._node import Key, Node, NodeState, freeze
from weft.data._sources import Transform, apply_order
from weft.errors import ResumeError

__all__ = ["UnitSource"]

log = logging.getLogger(__name__)


class UnitSource(Node):
    """Base of the unit-by-unit sources; subclasses read the units."""

    kind = "source"
    #: what a unit is called in messages and statistics ("row group", "shard")
    unit_noun = "unit"

    def __init__(self, *, name: str, transforms: tuple[Transform, ...], on_error: str) -> None:
        super().__init__(None, name=name)
        self._transforms = transforms
        self.skip_bad = on_error == "skip"
        self._epoch = 0
        self._order: Sequence[int] | None = None
        self._pos = 0
        self._offset = 0
        self._ident: tuple[int, ...] | None = None
        #: units started in this pass (a resumed pass starts only the ones it reads)
        self.units_started = 0

    # -- what a subclass provides ---------------------------------------------------------
    def unit_count(self) -> int:
        """How many units the data holds (before sharding)."""
        raise NotImplementedError

    def unit_id(self, unit: int) -> tuple[int, ...]:
        """The identity of unit ``unit`` that a saved position records."""
        raise NotImplementedError

    def fetch(self, keys: Sequence[Key]) -> list[Any]:
        """The items with these keys, read again (in the order of ``keys``)."""
        raise NotImplementedError

    def stop_reading(self) -> None:
        """Drop the open reader (files, scans); the next item starts at the position."""

    def skipped_count(self) -> int:
        """Files skipped as unreadable (``on_error="skip"``)."""
        return 0

    # -- order and position -------------------------------------------------------------
    def order(self) -> Sequence[int]:
        """The units of this epoch, after every shard and shuffle, in reading order."""
        if self._order is None:
            count = self.unit_count()
            self._order = apply_order(count, self._transforms, self._epoch)
            if count and not len(self._order):
                log.warning("weft: %s has %d %ss, fewer than the shards asked for: this rank reads nothing; "
                            "use fewer ranks or split the data into more %ss", self.name, count,
                            self.unit_noun, self.unit_noun)
        return self._order

    def at(self, pos: int, offset: int) -> None:
        """Move to ``offset`` in the unit at ``pos`` of the order."""
        self._pos, self._offset = pos, offset
        order = self.order()
        self._ident = self.unit_id(int(order[pos])) if pos < len(order) else None

    def set_epoch(self, epoch: int) -> None:
        if epoch != self._epoch:
            self._epoch = epoch
            self._order = None

    def state(self) -> Any:
        if self._pos == 0 and self._offset == 0 and self._ident is None:
            return None
        return NodeState((self._pos, self._ident, self._offset), None)

    def restore(self, state: Any) -> None:
        self.stop_reading()
        own = self.parts(state).own
        if own is None:
            self._pos, self._offset, self._ident = 0, 0, None
            return
        try:
            pos, ident, offset = own
        except (TypeError, ValueError):
            pos = ident = offset = None
        ident = freeze(ident)
        if not (isinstance(pos, int) and isinstance(offset, int) and pos >= 0 and offset >= 0
                and (ident is None or isinstance(ident, tuple))):
            raise ResumeError(f"{self.name}: position {own!r} is not ({self.unit_noun} position, "
                              f"{self.unit_noun}, offset): load a state saved from the same pipeline")
        order = self.order()
        if pos > len(order):
            raise ResumeError(f"{self.name}: the state is at {self.unit_noun} {pos} of this epoch, but this "
                              f"rank reads only {len(order)}: load a state saved with the same data and shards")
        found = self.unit_id(int(order[pos])) if pos < len(order) else None
        if found != ident:
            raise ResumeError(f"{self.name}: the state was saved at {self.unit_noun} {ident} (position {pos} of "
                              f"epoch {self._epoch}), where this pipeline now reads {found}: the files, the "
                              "filter or the shard and shuffle settings changed since; load a state saved "
                              "from the same pipeline over the same data")
        self.at(pos, offset)

    def export(self, state: Any) -> dict[str, Any]:
        out = super().export(state)
        if "state" in out:
            pos, ident, offset = out["state"]
            out["state"] = [pos, None if ident is None else list(ident), offset]
        return out

    def load(self, data: Any) -> Any:
        loaded = super().load(data)
        if loaded is None or loaded.own is None:
            return loaded
        return NodeState(freeze(loaded.own), None)

    def close(self) -> None:
        self.stop_reading()

    def _extra_statistics(self) -> dict[str, Any]:
        noun = self.unit_noun.replace(" ", "_")
        return {"skipped": self.skipped_count(), "extra": {f"{noun}s_started": float(self.units_started)}}
