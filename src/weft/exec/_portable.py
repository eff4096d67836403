"""Exceptions that must cross a process boundary (a worker's error sent to its owner).

An exception that pickles and unpickles intact is sent as is; any other (a class
that needs arguments pickle does not pass, one holding a lock, ...) becomes a
:class:`~weft.errors.RemoteError` that keeps its type name and message.
"""

from __future__ import annotations

import pickle

from weft.errors import RemoteError

__all__ = ["portable_exception"]


def portable_exception(exc: BaseException) -> BaseException:
    """``exc`` itself if it survives pickling, else a RemoteError describing it."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RemoteError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}")
    return exc
