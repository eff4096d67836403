"""Argument checks shared by every part of weft, so each message reads the same way.

Each check returns the value it accepted (so it can be used inline) and raises
:class:`~weft.errors.ConfigError` naming the argument, the value and what is allowed.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, TypeVar

from weft.errors import ConfigError

__all__ = ["check_int", "check_number", "check_one_of"]

T = TypeVar("T")


def check_int(name: str, value: Any, *, minimum: int = 1, maximum: int | None = None,
              none: bool = False) -> Any:
    """``value`` if it is an int (not a bool) in ``[minimum, maximum]``; ``None`` too if ``none``."""
    if value is None and none:
        return None
    ok = not isinstance(value, bool) and isinstance(value, int) and value >= minimum
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        also = " or None" if none else ""
        raise ConfigError(f"{name} must be an integer {bound}{also}, got {value!r}")
    return value


def check_number(name: str, value: Any, *, minimum: float = 0.0, strict: bool = False,
                 none: bool = False) -> Any:
    """``value`` if it is a real number (not a bool) >= ``minimum`` (> with ``strict``)."""
    if value is None and none:
        return None
    ok = not isinstance(value, bool) and isinstance(value, int | float) and value == value
    if ok:
        ok = value > minimum if strict else value >= minimum
    if not ok:
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        also = " or None" if none else ""
        raise ConfigError(f"{name} must be a number {bound}{also} (seconds for durations), got {value!r}")
    return value


def check_one_of(name: str, value: T, allowed: Collection[T]) -> T:
    """``value`` if it is one of ``allowed``."""
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value
