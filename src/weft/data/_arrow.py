"""What the Parquet source needs from pyarrow: the import (with the fix when it is
missing), the dict form of a filter, and Arrow columns as NumPy arrays.

pyarrow is imported here only when a Parquet source is made, so ``import weft.data``
stays light.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np

from weft.errors import ConfigError

__all__ = ["COMPARISONS", "arrow", "filter_expression", "to_numpy"]

#: The operators of the dict form of a filter, and the pyarrow expression each makes.
COMPARISONS = ("==", "!=", "<", "<=", ">", ">=", "in", "not in")


def arrow() -> tuple[ModuleType, ModuleType, ModuleType]:
    """``pyarrow``, ``pyarrow.dataset`` and ``pyarrow.compute``."""
    try:
        import pyarrow  # type: ignore[import-untyped, unused-ignore]
        import pyarrow.compute  # type: ignore[import-untyped, unused-ignore]
        import pyarrow.dataset  # type: ignore[import-untyped, unused-ignore]
    except ImportError as exc:
        raise ConfigError(f"from_parquet needs pyarrow, which is not installed for {sys.executable} "
                          f"({exc}): pip install 'weft[arrow]'") from exc
    return pyarrow, pyarrow.dataset, pyarrow.compute


def _compare(pc: ModuleType, name: str, op: str, value: Any) -> Any:
    field = pc.field(name)
    if op in ("in", "not in"):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise ConfigError(f"filter on {name!r}: {op!r} needs a list of values, got {value!r}")
        matched = field.isin(list(value))
        return ~matched if op == "not in" else matched
    if value is None:
        if op == "==":
            return field.is_null()
        if op == "!=":
            return field.is_valid()
        raise ConfigError(f"filter on {name!r}: {op!r} None compares with nothing: use '==' or '!=' with None")
    return {"==": field.__eq__, "!=": field.__ne__, "<": field.__lt__, "<=": field.__le__,
            ">": field.__gt__, ">=": field.__ge__}[op](value)


def filter_expression(spec: Any, columns: list[str], pc: ModuleType) -> Any:
    """A pyarrow expression from ``spec``: an expression already, or the dict form.

    Dict form (every entry must hold, i.e. they are ANDed)::

        {"year": 2024}                      equality (None: the value is null)
        {"year": [2023, 2024]}              one of a list, tuple or set of values
        {"x": {">=": 0.5, "<": 1.0}}        comparisons, among == != < <= > >= in, not in
    """
    if spec is None:
        return None
    if isinstance(spec, pc.Expression):
        return spec
    if not isinstance(spec, Mapping) or not spec:
        raise ConfigError(f"filter must be a pyarrow expression or a non-empty dict such as "
                          f"{{'year': 2024, 'x': {{'>=': 0.5}}}}, got {spec!r:.80}")
    terms = []
    for name, condition in spec.items():
        if name not in columns:
            raise ConfigError(f"filter names column {name!r}, which the data does not have: "
                              f"its columns are {columns}")
        if isinstance(condition, Mapping):
            if not condition:
                raise ConfigError(f"filter on {name!r}: an empty dict states no condition")
            for op, value in condition.items():
                if op not in COMPARISONS:
                    raise ConfigError(f"filter on {name!r}: unknown operator {op!r}: use one of {list(COMPARISONS)}")
                terms.append(_compare(pc, name, op, value))
        elif isinstance(condition, (list, tuple, set, frozenset)):
            terms.append(_compare(pc, name, "in", sorted(condition) if isinstance(condition, (set, frozenset))
                                  else condition))
        else:
            terms.append(_compare(pc, name, "==", condition))
    expression = terms[0]
    for term in terms[1:]:
        expression = expression & term
    return expression


def to_numpy(column: Any, pa: ModuleType) -> np.ndarray:
    """One Arrow column as a NumPy array: numbers without nulls without a copy (read-only),
    strings and nested values as object arrays, a fixed-size list of numbers as a 2-D
    array (one row per value)."""
    kind = column.type
    if (pa.types.is_fixed_size_list(kind) and column.null_count == 0
            and (pa.types.is_integer(kind.value_type) or pa.types.is_floating(kind.value_type))):
        values = column.flatten().to_numpy(zero_copy_only=False)
        out: np.ndarray = values.reshape(len(column), kind.list_size)
        return out
    result: np.ndarray = column.to_numpy(zero_copy_only=False)
    return result
