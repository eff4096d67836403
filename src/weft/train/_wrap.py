"""What kind of callable a decorator is wrapping: plain, async, generator or async generator.

Each decorator needs one wrapper per kind (timing a generator means timing the
whole iteration, not the call that creates it), so the classification lives here once.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Literal

__all__ = ["Kind", "kind_of", "qualified_name"]

Kind = Literal["sync", "async", "generator", "async_generator"]


def kind_of(fn: Callable[..., Any]) -> Kind:
    """Classify ``fn``; looks through ``functools.partial`` and bound methods."""
    target = inspect.unwrap(fn)
    if inspect.isasyncgenfunction(target):
        return "async_generator"
    if inspect.iscoroutinefunction(target):
        return "async"
    if inspect.isgeneratorfunction(target):
        return "generator"
    return "sync"


def qualified_name(fn: Callable[..., Any]) -> str:
    """``module.Qualname`` of a function, for statistics and log lines."""
    module = getattr(fn, "__module__", None) or "?"
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{module}.{name}"
