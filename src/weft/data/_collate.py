"""Turning a list of items into a batch, and a batch back into items."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from weft.errors import ConfigError

__all__ = ["default_collate", "pad_collate", "uncollate"]


def default_collate(items: Sequence[Any]) -> Any:
    """Stack a list of items into one batch, field by field.

    NumPy arrays of one shape are stacked (a new first axis); numbers become a 1-D
    array; dicts, tuples and lists are collated per field (a dict of batches, a tuple
    of batches); anything else (strings, bytes, objects) stays a list.
    """
    first = items[0]
    if isinstance(first, np.ndarray):
        try:
            return np.stack(items)
        except ValueError as exc:
            shapes = sorted({tuple(x.shape) for x in items})[:4]
            raise ConfigError(f"cannot stack arrays of different shapes {shapes} into a batch: "
                              "use collate=weft.data.pad_collate(pad_value=0) for ragged sequences, "
                              "or collate=list") from exc
    if isinstance(first, (bool, numbers.Number, np.generic)):
        return np.asarray(items)
    if isinstance(first, dict):
        return {k: default_collate([x[k] for x in items]) for k in first}
    if isinstance(first, tuple) and not hasattr(first, "_fields"):
        return tuple(default_collate(col) for col in zip(*items, strict=True))
    if isinstance(first, list):
        return [default_collate(col) for col in zip(*items, strict=True)]
    return list(items)


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

    Fields are treated as with :func:`default_collate`. With ``lengths=True`` every
    padded field becomes ``(padded, lengths)``, the original first-axis lengths.
    """

    def collate(items: Sequence[Any]) -> Any:
        first = items[0]
        if isinstance(first, dict):
            return {k: collate([x[k] for x in items]) for k in first}
        if isinstance(first, tuple):
            return tuple(collate(col) for col in zip(*items, strict=True))
        if isinstance(first, (np.ndarray, list)):
            padded = _pad_stack(items, pad_value)
            if lengths:
                return padded, np.asarray([len(x) for x in items])
            return padded
        return default_collate(items)

    return collate


def uncollate(batch: Any, n: int) -> list[Any]:
    """Split a batch of ``n`` items back into items (the inverse of :func:`default_collate`)."""
    if isinstance(batch, np.ndarray) and batch.ndim >= 1 and batch.shape[0] == n:
        return list(batch)
    if isinstance(batch, dict):
        columns = {k: uncollate(v, n) for k, v in batch.items()}
        return [{k: col[i] for k, col in columns.items()} for i in range(n)]
    if isinstance(batch, tuple) and not hasattr(batch, "_fields"):
        return list(zip(*(uncollate(col, n) for col in batch), strict=True))
    if isinstance(batch, list):
        if len(batch) == n:
            return batch
        if all(len(col) == n for col in batch):
            return [list(row) for row in zip(*(uncollate(col, n) for col in batch), strict=True)]
    length = len(batch) if hasattr(batch, "__len__") else None
    raise ConfigError(f"cannot split a batch of type {type(batch).__name__} (length {length}) into {n} items: "
                      "unbatch splits arrays, dicts, tuples and lists made by the default collate")
