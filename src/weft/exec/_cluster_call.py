"""What travels to a cluster engine (Ray, Dask) and back: one call and its reply.

A :class:`Call` is what a :class:`~weft.exec._cluster.ClusterExecutor` keeps from
submit to answer; :func:`run_call` runs it where the engine placed it and sends back a
:class:`Reply` (errors as values, the call alone timed). The helpers size a call's
arguments (the executor bounds the bytes on the cluster), name it in messages, and
tell how its function travels (by reference, in the object store, or to actors).
"""

from __future__ import annotations

import functools
import inspect
import itertools
import reprlib
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, NamedTuple

from weft.exec._portable import portable_exception

__all__ = ["Call", "Reply", "describe_call", "is_callable_object", "is_plain_function", "payload_bytes",
           "run_call", "writable"]

#: Depth and breadth to which arguments are walked to count their bytes.
_SIZE_DEPTH, _SIZE_BREADTH = 3, 1000


class Reply(NamedTuple):
    """What a remote call sends back: its value or error, its timing and its node."""

    ok: bool
    value: Any
    traceback: str
    busy_seconds: float
    cpu_seconds: float
    node: str


def run_call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], node: str) -> Reply:
    """Run one call where the engine placed it; errors come back as values, not raised.

    Only the call itself is timed: not receiving its arguments, not sending the reply.
    """
    start, cpu = time.perf_counter(), time.thread_time()
    try:
        value = fn(*args, **kwargs)
    except BaseException as exc:
        busy, cpu = time.perf_counter() - start, time.thread_time() - cpu
        return Reply(False, portable_exception(exc), traceback.format_exc(), busy, cpu, node)
    return Reply(True, value, "", time.perf_counter() - start, time.thread_time() - cpu, node)


def payload_bytes(obj: object, depth: int = _SIZE_DEPTH) -> int:
    """Bytes of the arrays and byte strings in ``obj`` (walked a few levels deep)."""
    nbytes = getattr(obj, "nbytes", None)
    if isinstance(nbytes, int) and "numpy" in sys.modules and isinstance(obj, sys.modules["numpy"].ndarray):
        return nbytes
    if isinstance(obj, bytes | bytearray | memoryview):
        return len(obj) if not isinstance(obj, memoryview) else obj.nbytes
    if depth <= 0:
        return 0
    if isinstance(obj, tuple | list):
        return sum(payload_bytes(x, depth - 1) for x in itertools.islice(obj, _SIZE_BREADTH))
    if isinstance(obj, dict):
        return sum(payload_bytes(x, depth - 1) for x in itertools.islice(obj.values(), _SIZE_BREADTH))
    return 0


def writable(value: Any, depth: int = _SIZE_DEPTH) -> Any:
    """``value`` with every read-only array in it (a few levels deep) copied.

    Engines hand results back as read-only views of their object store, which also
    keep the store's copy alive; a copy gives the caller the ordinary, writable array
    every other backend returns and lets the store free its memory at once.
    """
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        return value if value.flags.writeable else value.copy()
    if depth <= 0:
        return value
    if type(value) is tuple:
        return tuple(writable(x, depth - 1) for x in value)
    if type(value) is list:
        return [writable(x, depth - 1) for x in value]
    if type(value) is dict:
        return {k: writable(x, depth - 1) for k, x in value.items()}
    return value


def is_plain_function(fn: Callable[..., Any]) -> bool:
    """A module-level function: pickled by reference, nothing to keep in the object store."""
    if inspect.isbuiltin(fn):
        return True
    return (inspect.isfunction(fn) and fn.__closure__ is None
            and "<" not in fn.__qualname__)  # no <locals>, no <lambda>


def is_callable_object(fn: object) -> bool:
    """An instance of a class that defines ``__call__`` in Python: it runs on actors."""
    return not isinstance(fn, type) and inspect.isfunction(inspect.getattr_static(type(fn), "__call__", None))


def describe_call(fn: Callable[..., Any], args: tuple[Any, ...]) -> str:
    """``name(args)`` as a message shows a call: a partial by its function, an object by its class."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{name}{reprlib.repr(args)}"


@dataclass(eq=False)
class Call:
    """One call, from submit to its answer; handed to the engine once per attempt."""

    future: Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    nbytes: int
    attempts: int = 0
    handle: Any = None  # the engine's handle of the current attempt; None while queued
    cancelling: bool = False

    @property
    def label(self) -> str:
        return describe_call(self.fn, self.args)
