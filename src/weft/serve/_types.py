"""Tensor specs, V2 datatypes and the ``Model`` protocol a user's class implements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from weft.errors import ConfigError

__all__ = ["DATATYPES", "Model", "TensorSpec", "datatype_of", "dtype_of"]

#: Open Inference Protocol datatypes and the NumPy dtype each maps to (little-endian).
#: BYTES elements are Python ``bytes`` in an object array.
DATATYPES: Mapping[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
    "BYTES": np.dtype("O"),
}
_BY_KIND_SIZE = {(dt.kind, dt.itemsize): name for name, dt in DATATYPES.items() if name != "BYTES"}


def dtype_of(datatype: str) -> np.dtype[Any]:
    """The NumPy dtype of a V2 datatype name; ConfigError for an unknown name."""
    try:
        return DATATYPES[datatype]
    except KeyError:
        raise ConfigError(f"unknown datatype {datatype!r}: use one of {sorted(DATATYPES)}") from None


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The V2 datatype name of a NumPy dtype (strings and objects are BYTES)."""
    if dtype.kind in "OSU":
        return "BYTES"
    name = _BY_KIND_SIZE.get((dtype.kind, dtype.itemsize))
    if name is None:
        raise ConfigError(f"NumPy dtype {dtype} has no Open Inference Protocol datatype: "
                          f"convert to one of {sorted(DATATYPES)}")
    return name


@dataclass(frozen=True, kw_only=False)
class TensorSpec:
    """A declared model input or output: name, V2 datatype and shape.

    ``-1`` marks a variable dimension; the first dimension is the batch dimension.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]

    def __init__(self, name: str, datatype: str, shape: Sequence[int]) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a tensor name must be a non-empty string, got {name!r}")
        dtype_of(datatype)
        dims = tuple(shape)
        if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < -1 for d in dims):
            raise ConfigError(f"tensor {name!r}: shape must be a non-empty list of ints >= -1 "
                              f"(-1 = variable, first = batch), got {list(shape)!r}")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "datatype", datatype)
        object.__setattr__(self, "shape", dims)

    @property
    def dtype(self) -> np.dtype[Any]:
        return DATATYPES[self.datatype]

    def accepts(self, shape: Sequence[int]) -> bool:
        """Whether a tensor of ``shape`` fits this spec (same rank, fixed dims equal)."""
        return len(shape) == len(self.shape) and all(d == -1 or d == s for d, s in zip(self.shape, shape, strict=True))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(str(data["name"]), str(data["datatype"]), list(data["shape"]))


@runtime_checkable
class Model(Protocol):
    """What a served model provides (duck-typed; ``name`` is optional).

    ``load`` runs once per worker before the first ``predict``; ``predict`` receives a
    batch (first dimension = rows from one or more requests) and returns arrays with
    the same number of rows.
    """

    inputs: Sequence[TensorSpec]
    outputs: Sequence[TensorSpec]

    def load(self) -> None: ...

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...
