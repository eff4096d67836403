"""Closing at interpreter exit what a program left open: pipeline passes, then executors.

A script that breaks out of a loop over a pipeline and ends, or never closes an
executor, leaves worker threads and processes running. They are closed from ``atexit``,
as ``close()`` would close them, while their threads still run. Left to garbage
collection during finalization they could not be: the interpreter has frozen its daemon
threads by then, and waiting for one never returns (the script would hang at its end).
And multiprocessing's own exit handler would terminate the worker processes under a
running process executor, which would take them for crashed workers and restart them.

Passes close first: a pass's prefetch thread may be blocked on the executors' results.
"""

from __future__ import annotations

import atexit
import sys
import threading
import weakref
from typing import Protocol

__all__ = ["forget", "remember_executor", "remember_pass"]


class _Closable(Protocol):
    def close(self) -> None: ...


_passes: weakref.WeakSet[_Closable] = weakref.WeakSet()
_executors: weakref.WeakSet[_Closable] = weakref.WeakSet()
_lock = threading.Lock()
_hooked = False
#: Whether our handler was registered after multiprocessing's (atexit runs the newest
#: first), which every process executor imports before it is made.
_ahead_of_multiprocessing = False


def _hook() -> None:
    global _hooked, _ahead_of_multiprocessing
    with _lock:
        if _hooked and _ahead_of_multiprocessing:
            return
        ahead = "multiprocessing.util" in sys.modules
        if _hooked and not ahead:
            return
        if _hooked:
            atexit.unregister(_close_all)
        atexit.register(_close_all)
        _hooked, _ahead_of_multiprocessing = True, ahead


def remember_pass(run: _Closable) -> None:
    """Close ``run`` at exit if it is still open then."""
    _hook()
    _passes.add(run)


def remember_executor(executor: _Closable) -> None:
    """Close ``executor`` at exit (after the passes) if it is still open then."""
    _hook()
    _executors.add(executor)


def forget(obj: _Closable) -> None:
    """``obj`` was closed."""
    _passes.discard(obj)
    _executors.discard(obj)


def _close_all() -> None:
    for group in (_passes, _executors):
        for obj in list(group):
            try:
                obj.close()
            except Exception as exc:  # one failure must not keep the rest open
                print(f"weft: closing {obj!r} at exit failed: {exc!r}", file=sys.stderr)
