"""Nested items: dicts, namedtuples, tuples and lists, walked the same way everywhere.

Collating a batch, splitting it again, padding ragged fields and turning arrays into
tensors all walk the same containers. This module is the one walk: what counts as a
container (:func:`branches`), how one is rebuilt with new contents (:func:`rebuild`),
a function applied to every leaf (:func:`map_leaves`) and a list of items turned into
one item of lists (:func:`zip_leaves`). A namedtuple stays a namedtuple of its type.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from weft.errors import ConfigError

__all__ = ["branches", "is_namedtuple", "map_leaves", "rebuild", "zip_leaves"]


def is_namedtuple(value: object) -> bool:
    return isinstance(value, tuple) and hasattr(type(value), "_fields")


def branches(value: object, *, lists: bool = True) -> list[Any] | None:
    """The contents of a container in order (a dict's values), or None for a leaf.

    ``lists=False`` makes lists leaves (a padding collate treats them as sequences).
    """
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, tuple) or (lists and isinstance(value, list)):
        return list(value)
    return None


def rebuild(template: Any, contents: Sequence[Any]) -> Any:
    """A container like ``template`` (same type, same keys) holding ``contents``."""
    if isinstance(template, dict):
        return dict(zip(template, contents, strict=True))
    if is_namedtuple(template):
        return type(template)(*contents)
    if isinstance(template, tuple):
        return tuple(contents)
    return list(contents)


def map_leaves(value: Any, leaf: Callable[[Any], Any], *, lists: bool = True) -> Any:
    """``value`` with ``leaf`` applied to everything that is not a container."""
    contents = branches(value, lists=lists)
    if contents is None:
        return leaf(value)
    return rebuild(value, [map_leaves(v, leaf, lists=lists) for v in contents])


def zip_leaves(items: Sequence[Any], leaf: Callable[[Sequence[Any]], Any], *, lists: bool = True) -> Any:
    """Items of one nested shape as one item of that shape whose leaves are
    ``leaf(the items' values at that place)``: a list of records becomes a record of
    lists (a dict of batches, a namedtuple of batches, ...). The first item sets the shape."""
    first = items[0]
    if branches(first, lists=lists) is None:
        return leaf(items)
    if isinstance(first, dict):
        columns = [[x[k] for x in items] for k in first]
        return rebuild(first, [zip_leaves(c, leaf, lists=lists) for c in columns])
    try:
        columns = [list(c) for c in zip(*items, strict=True)]
    except ValueError as exc:
        lengths = sorted({len(x) for x in items if hasattr(x, "__len__")})[:4]
        raise ConfigError(f"cannot batch {type(first).__name__} items of different lengths {lengths} field by "
                          "field: give every item the same fields, or pass collate=list") from exc
    return rebuild(first, [zip_leaves(c, leaf, lists=lists) for c in columns])
