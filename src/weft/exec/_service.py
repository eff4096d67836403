"""One long-lived service (an event loop that serves until told to stop) on a thread.

Not an executor: an executor runs units of work that return, counts each as busy and
stops by cancelling queued work; a service returns only when it is stopped, by its own
means (draining its loop). The model server and the runs page each run one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["ServiceThread"]


class ServiceThread:
    """Runs ``serve(ready)`` on a daemon thread named ``name``.

    ``serve`` calls ``ready()`` once it accepts work; :meth:`start` returns then, or
    raises what ``serve`` raised before that. An error after ``ready()`` is kept in
    :attr:`error` (the service's own shutdown reports it).
    """

    def __init__(self, serve: Callable[[Callable[[], None]], None], *, name: str) -> None:
        self._serve = serve
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self.error is not None:
            self._thread.join()
            raise self.error

    def _main(self) -> None:
        try:
            self._serve(self._ready.set)
        except BaseException as exc:
            self.error = exc
        finally:
            self._ready.set()  # start() must not wait forever for a service that failed early

    def join(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` seconds (None: as long as it takes) for the service to return;
        a no-op on the service's own thread (a service stopping itself)."""
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
