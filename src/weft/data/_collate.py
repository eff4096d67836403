"""Turning a list of items into a batch, and a batch back into items."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from weft.data._nested import branches, rebuild, zip_leaves
from weft.errors import ConfigError

__all__ = ["default_collate", "field_batch", "pad_collate", "uncollate"]


def field_batch(values: Sequence[Any]) -> Any:
    """One field of a batch: arrays stacked, numbers as a 1-D array, anything else a list
    (the rule :func:`default_collate` applies to the values at each leaf place)."""
    first = values[0]
    if isinstance(first, np.ndarray):
        try:
            return np.stack(values)
        except ValueError as exc:
            shapes = sorted({tuple(x.shape) for x in values})[:4]
            raise ConfigError(f"cannot stack arrays of different shapes {shapes} into a batch: "
                              "use collate=weft.data.pad_collate(pad_value=0) for ragged sequences, "
                              "or collate=list") from exc
    if isinstance(first, (bool, numbers.Number, np.generic)):
        return np.asarray(values)
    return list(values)


def default_collate(items: Sequence[Any]) -> Any:
    """Stack a list of items into one batch, field by field.

    NumPy arrays of one shape are stacked (a new first axis); numbers become a 1-D
    array; dicts, namedtuples, tuples and lists are collated per field (a dict of
    batches, a namedtuple of batches, ...); anything else (strings, bytes, objects)
    stays a list.
    """
    return zip_leaves(items, field_batch)


def _pad_stack(arrays: Sequence[Any], pad_value: Any) -> np.ndarray:
    arrays = [np.asarray(a) for a in arrays]
    if any(a.ndim == 0 for a in arrays):
        return np.asarray(arrays)
    shape = tuple(max(a.shape[d] for a in arrays) for d in range(arrays[0].ndim))
    out = np.full((len(arrays), *shape), pad_value, dtype=np.result_type(*arrays))
    for i, a in enumerate(arrays):
        index: tuple[Any, ...] = (i, *tuple(slice(0, n) for n in a.shape))
        out[index] = a
    return out


def pad_collate(pad_value: Any = 0, *, lengths: bool = False) -> Callable[[Sequence[Any]], Any]:
    """A collate that pads ragged sequences (arrays or lists of numbers) to the longest.

    Fields are treated as with :func:`default_collate`, except that a list is a
    sequence to pad, not a record. With ``lengths=True`` every padded field becomes
    ``(padded, lengths)``, the original first-axis lengths.
    """

    def field(values: Sequence[Any]) -> Any:
        if isinstance(values[0], (np.ndarray, list)):
            padded = _pad_stack(values, pad_value)
            if lengths:
                return padded, np.asarray([len(x) for x in values])
            return padded
        return field_batch(values)

    def collate(items: Sequence[Any]) -> Any:
        return zip_leaves(items, field, lists=False)

    return collate


def uncollate(batch: Any, n: int) -> list[Any]:
    """Split a batch of ``n`` items back into items (the inverse of :func:`default_collate`)."""
    if isinstance(batch, np.ndarray) and batch.ndim >= 1 and batch.shape[0] == n:
        return list(batch)
    if isinstance(batch, list) and len(batch) == n:
        return batch  # collate=list, or a field of n values that stayed a list
    contents = branches(batch)
    if contents is not None and (not isinstance(batch, list) or all(hasattr(c, "__len__") and len(c) == n
                                                                     for c in contents)):
        columns = [uncollate(c, n) for c in contents]
        return [rebuild(batch, row) for row in zip(*columns, strict=True)]
    length = len(batch) if hasattr(batch, "__len__") else None
    raise ConfigError(f"cannot split a batch of type {type(batch).__name__} (length {length}) into {n} items: "
                      "unbatch splits arrays, dicts, tuples and lists made by the default collate")
