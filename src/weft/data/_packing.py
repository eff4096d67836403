"""A chunk of results packed one array per field, and batches made of such chunks.

A worker packs a chunk whose results share one nested shape (the same dict keys, tuples
or lists of one length, one namedtuple type, at any depth; or bare arrays): every place
whose values are NumPy arrays of one shape and dtype becomes one stacked array, the
chunk's column for that field. On processes that is one pickle (or one shared-memory
segment) per field instead of one per item; on threads, when a batch stage with the
default collate consumes the map, it is the batch's stacking done by the worker, in
parallel, instead of by the consumer alone. A batch is then a slice of each column (a
view) or, when it spans chunks, their concatenation.

Exactness. A packed batch is exactly what :func:`~weft.data.default_collate` gives for
the same items, types included: places that do not stack (numbers, strings, ragged or
mixed arrays, 0-d arrays) stay lists of the values the function returned and go through
the default collate's own field rule, and whatever does not fit the fast path (chunks of
different shapes, mixed pieces) falls back to the default collate of the items. A
container subclass (an ``OrderedDict``, a ``list`` subclass) is never packed: the
default collate rebuilds it as its base type, which a packed row could not undo. A row
is rebuilt from the columns, its array leaves views of the stacked column: equal to the
result the function returned, not that object. The results themselves are not kept
beside their stacked copy: for large arrays that would hold every chunk in memory twice
(4 MB results in batches of 4 on 2 threads: 1.16x the items/s without them, peak RSS
212 -> 144 MB, page faults per item ~50 -> 5).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from weft.data._collate import default_collate, field_batch

__all__ = ["PackedRows", "collate_runs", "pack", "stacks"]

#: The nested shape of a result: None for a leaf, else (container type, dict keys or
#: length, the shapes of its contents). Equal shapes mean default_collate zips the
#: results field by field the same way.
Shape = Any


class _Unpackable(Exception):
    """A result whose shape packing cannot keep exact (a container subclass)."""


def _shape(value: Any, leaves: list[Any]) -> Shape:
    """``value``'s nested shape; its leaves are appended to ``leaves`` in order."""
    kind = type(value)
    if kind is dict:
        return dict, tuple(value), tuple(_shape(v, leaves) for v in value.values())
    if kind is tuple or kind is list or (issubclass(kind, tuple) and hasattr(kind, "_fields")):
        return kind, len(value), tuple(_shape(v, leaves) for v in value)
    if isinstance(value, (dict, tuple, list)):
        raise _Unpackable
    leaves.append(value)
    return None


def _build(shape: Shape, leaves: Iterator[Any]) -> Any:
    """The inverse of :func:`_shape`: containers like the first result's (as
    :func:`weft.data._nested.rebuild` makes them) around the next ``leaves``."""
    if shape is None:
        return next(leaves)
    kind, keys, contents = shape
    values = [_build(c, leaves) for c in contents]
    if kind is dict:
        return dict(zip(keys, values, strict=True))
    if kind is list:
        return values
    if kind is tuple:
        return tuple(values)
    return kind(*values)  # a namedtuple


def _stackable(value: Any) -> bool:
    return type(value) is np.ndarray and value.ndim >= 1 and not value.dtype.hasobject


def stacks(column: Sequence[Any]) -> bool:
    """Whether np.stack of ``column`` is what default_collate makes of it, with no promotion
    (plain arrays of one shape and dtype; object arrays pickle per element anyway, and 0-d
    arrays would come back from a stacked column as NumPy scalars)."""
    first = column[0]
    if not _stackable(first):
        return False
    shape, dtype = first.shape, first.dtype
    return all(type(a) is np.ndarray and a.shape == shape and a.dtype == dtype for a in column)


class PackedRows:
    """A chunk of results of one nested shape, one column per leaf place.

    A column is an array stacking that place's values, or the list of the values.
    Indexing with an int gives a result, with a slice a PackedRows of those rows (views
    of the columns); iterating gives the results in order.
    """

    __slots__ = ("columns", "length", "shape")

    def __init__(self, shape: Shape, columns: list[Any], length: int) -> None:
        self.shape = shape
        self.columns = columns
        self.length = length

    def __reduce__(self) -> tuple[Any, ...]:
        # no BUILD step: a payload is also read only to release its shared memory
        return PackedRows, (self.shape, self.columns, self.length)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            start, stop, step = index.indices(self.length)
            if step != 1:
                raise ValueError("PackedRows slices take consecutive rows")
            stop = max(start, stop)
            return PackedRows(self.shape, [c[start:stop] for c in self.columns], stop - start)
        return _build(self.shape, iter([c[index] for c in self.columns]))

    def __iter__(self) -> Iterator[Any]:
        return (self[i] for i in range(self.length))


def pack(results: list[Any], stack: Callable[[list[Any]], Any]) -> PackedRows | None:
    """``results`` packed, their stackable places stacked by ``stack``; None when they
    differ in shape or no place stacks (packing would gain nothing)."""
    rows: list[list[Any]] = [[]]
    try:
        shape = _shape(results[0], rows[0])
        if not any(_stackable(leaf) for leaf in rows[0]):
            return None
        for value in results[1:]:
            leaves: list[Any] = []
            if _shape(value, leaves) != shape:
                return None
            rows.append(leaves)
    except _Unpackable:
        return None
    columns: list[Any] = []
    stacked = False
    for place in zip(*rows, strict=True):
        column = list(place)
        if stacks(column):
            columns.append(stack(column))
            stacked = True
        else:
            columns.append(column)
    if not stacked:
        return None
    return PackedRows(shape, columns, len(results))


def _join(parts: list[Any]) -> Any:
    """One field of a batch from its parts in successive chunks (stacked arrays or lists of
    values): a slice as it is, arrays of one dtype and row shape concatenated, else the
    default collate's field rule over the values."""
    first = parts[0]
    if all(type(p) is np.ndarray and p.dtype == first.dtype and p.shape[1:] == first.shape[1:] for p in parts):
        return first if len(parts) == 1 else np.concatenate(parts)
    return field_batch([v for part in parts for v in part])  # an array's rows are views of it


def collate_runs(pieces: list[Any]) -> Any:
    """What :func:`~weft.data.default_collate` gives for the items of ``pieces``, in order.

    A piece is a list of values, an array of rows a worker process stacked, or a
    :class:`PackedRows` (see :meth:`weft.data._node.Node.next_run`).
    """
    first = pieces[0]
    if len(pieces) == 1 and type(first) is list:
        return default_collate(first)
    if type(first) is PackedRows and all(type(p) is PackedRows and p.shape == first.shape for p in pieces):
        columns = [_join([p.columns[j] for p in pieces]) for j in range(len(first.columns))]
        return _build(first.shape, iter(columns))
    if all(type(p) is np.ndarray for p in pieces):
        return _join(pieces)
    return default_collate([v for piece in pieces for v in piece])
