"""``logged``: one log line per call, with arguments summarised rather than dumped.

Arrays (NumPy, torch, anything with ``shape`` and ``dtype``) appear as
``ndarray[float32, (32, 3, 64, 64)]``; long strings, sequences and mappings are cut.
Lines go to ``logging.getLogger(<the function's module>)`` with %-style arguments,
so nothing is formatted when the level is disabled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Mapping
from typing import Any, TypeVar

from weft._checks import check_int
from weft.errors import ConfigError
from weft.train._wrap import CALL, NEXT, START, Emit, Finished, kind_of, make_wrapper

__all__ = ["logged", "summarize"]

F = TypeVar("F", bound=Callable[..., Any])

#: Containers with more items than this are summarised by their length alone, and only
#: the first level of nesting is shown: a log line stays one readable line.
_MAX_ITEMS = 4
#: The narrowest ``width`` that still fits ``ndarray[...`` or a cut string and its "…".
_MIN_WIDTH = 8
#: An exception's message is cut to this many characters in the error line.
_ERROR_WIDTH = 200


def summarize(value: object, *, width: int = 60, _depth: int = 0) -> str:
    """A short, safe description of ``value`` for a log line."""
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None and not isinstance(value, type):
        dtype_name = str(dtype).removeprefix("torch.")
        return f"{type(value).__name__}[{dtype_name}, {tuple(shape)}]"
    if isinstance(value, str | bytes | bytearray):
        text = repr(value)
        if len(text) <= width:
            return text
        if isinstance(value, str):
            return f"{text[:width - 1]}…({len(value)} chars)"
        return f"{type(value).__name__}[{len(value)} bytes]"
    if isinstance(value, Mapping):
        if _depth >= 1 or len(value) > _MAX_ITEMS:
            return f"{type(value).__name__}[{len(value)} keys]"
        inner = ", ".join(f"{k!r}: {summarize(v, width=width // 2, _depth=_depth + 1)}" for k, v in value.items())
        return _cut("{" + inner + "}", width)
    if isinstance(value, list | tuple | set | frozenset):
        if _depth >= 1 or len(value) > _MAX_ITEMS:
            return f"{type(value).__name__}[len={len(value)}]"
        inner = ", ".join(summarize(v, width=width // 2, _depth=_depth + 1) for v in value)
        if isinstance(value, list):
            return _cut(f"[{inner}]", width)
        if isinstance(value, tuple):
            return _cut(f"({inner})", width)
        return _cut(f"{type(value).__name__}({inner})", width)
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not break the call
        text = f"<{type(value).__name__} (repr failed: {type(exc).__name__})>"
    return _cut(text, width)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(1, width - 1)] + "…"


def _arguments(args: tuple[Any, ...], kwargs: dict[str, Any], width: int) -> str:
    parts = [summarize(a, width=width) for a in args]
    parts += [f"{k}={summarize(v, width=width)}" for k, v in kwargs.items()]
    return ", ".join(parts)


def logged(target: Any = None, /, *, logger: logging.Logger | str | None = None, level: int = logging.INFO,
           error_level: int = logging.WARNING, width: int = 60, exc_info: bool = False) -> Any:
    """Log each call: ``name(args) -> result type in 1.234 ms`` or ``... raised ValueError: msg``.

    Works as ``@logged`` or ``@logged(level=logging.DEBUG, logger="train")``, on functions,
    methods, async functions and generators (a generator's line is written when it
    finishes, with the number of items it yielded). ``exc_info=True`` adds the traceback
    to the error line; the exception itself always propagates unchanged.
    """
    check_int("width", width, minimum=_MIN_WIDTH)

    def decorate(fn: F) -> F:
        log = (logger if isinstance(logger, logging.Logger)
               else logging.getLogger(logger or getattr(fn, "__module__", None) or __name__))
        name = getattr(fn, "__qualname__", repr(fn))

        def start(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, float] | None:
            if not log.isEnabledFor(min(level, error_level)):
                return None
            return _arguments(args, kwargs, width), time.perf_counter()

        def done(ctx: tuple[str, float] | None, result: str) -> None:
            if ctx is not None and log.isEnabledFor(level):
                log.log(level, "%s(%s) -> %s in %.3f ms", name, ctx[0], result,
                        (time.perf_counter() - ctx[1]) * 1e3)

        def failed(ctx: tuple[str, float] | None, exc: BaseException) -> None:
            if ctx is not None and log.isEnabledFor(error_level):
                log.log(error_level, "%s(%s) raised %s: %s after %.3f ms", name, ctx[0], type(exc).__name__,
                        _cut(str(exc), _ERROR_WIDTH), (time.perf_counter() - ctx[1]) * 1e3, exc_info=exc if exc_info else None)

        def call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Generator[Any, Any, Any]:
            ctx = start(args, kwargs)
            try:
                result = yield CALL
            except BaseException as exc:
                failed(ctx, exc)
                raise
            done(ctx, _result_type(result))
            return result

        def iterate(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Generator[Any, Any, Any]:
            # one line when the generator finishes, with the number of items it yielded
            ctx = start(args, kwargs)
            count = 0
            try:
                yield START
                while True:
                    item = yield NEXT
                    if isinstance(item, Finished):
                        break
                    count += 1
                    yield Emit(item)
            except GeneratorExit:
                done(ctx, f"{label} closed after {count} item(s)")
                raise
            except BaseException as exc:
                failed(ctx, exc)
                raise
            done(ctx, f"{label} of {count} item(s)")

        label = "async generator" if kind_of(fn) == "async_generator" else "generator"
        wrapped: F = make_wrapper(fn, call=call, iterate=iterate)
        return wrapped

    if callable(target):
        return decorate(target)
    if target is not None:
        raise ConfigError(f"logged() takes a function or keyword options, got {target!r}")
    return decorate


def _result_type(result: object) -> str:
    if result is None:
        return "None"
    shape = getattr(result, "shape", None)
    if shape is not None and getattr(result, "dtype", None) is not None:
        return summarize(result)
    if isinstance(result, list | tuple | dict | set | str | bytes):
        return f"{type(result).__name__}(len={len(result)})"
    return type(result).__name__
