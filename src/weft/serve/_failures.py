"""The server's log of model failures: what a user needs to fix their model, and no flood.

A failing ``predict()`` carries the traceback of the user's code (taken on the worker,
thread or process, as text in ``details``). The first failure of each kind is logged
with that traceback; the same failure again is counted and summed up in one line at most
every :data:`REPEAT_SECONDS`. Clients get the one-line message only, never a traceback.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable

from weft.errors import ModelError

__all__ = ["FailureLog", "REPEAT_SECONDS", "details", "user_error"]

log = logging.getLogger("weft.serve")

#: The shortest interval between two lines about the same failure.
REPEAT_SECONDS = 60.0


def user_error(message: str, exc: BaseException) -> ModelError:
    """A ModelError for a failure of the user's code, with its traceback in ``details``.

    An attribute, not an argument: it survives pickling (a process worker's error), and
    it is never part of the message a client sees.
    """
    error = ModelError(message)
    error.details = "".join(traceback.format_exception(exc))  # type: ignore[attr-defined]
    return error


def details(exc: BaseException) -> str | None:
    """The user's traceback a failure carries, if any."""
    text = getattr(exc, "details", None)
    return text if isinstance(text, str) else None


def _kind(text: str) -> str:
    """What makes two failures the same: the exception's type and where it was raised
    (the message may hold the values of each request)."""
    lines = [line for line in text.splitlines() if line.strip()]
    frames = [line.strip() for line in lines if line.lstrip().startswith("File ")]
    last = lines[-1] if lines else ""
    return f"{frames[-1] if frames else ''}|{last.split(':', 1)[0]}"


class FailureLog:
    """Logs each distinct model failure once with its traceback, then counts repeats."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._seen: dict[tuple[str, str], list[float]] = {}  # -> [last logged, repeats since]

    def failed(self, model: str, exc: BaseException) -> None:
        text = details(exc)
        key = (model, _kind(text) if text is not None else f"{type(exc).__name__}: {exc}")
        now = self._clock()
        seen = self._seen.get(key)
        if seen is None:
            self._seen[key] = [now, 0]
            if text is None:
                log.warning("model %r failed: %s", model, exc)
            else:
                log.error("model %r failed: %s\n%s(the same failure again is logged at most once every %g s)",
                          model, exc, text, REPEAT_SECONDS)
            return
        seen[1] += 1
        if now - seen[0] >= REPEAT_SECONDS:
            log.error("model %r failed %d more time(s) the same way, last: %s", model, seen[1], exc)
            seen[0], seen[1] = now, 0
