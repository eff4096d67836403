"""ServiceThread: a long-lived service on a thread, started once it says it is ready."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from weft.exec._service import ServiceThread


def test_start_returns_once_the_service_is_ready_and_join_waits_for_it_to_stop() -> None:
    stop = threading.Event()
    seen: list[str] = []

    def serve(ready: Callable[[], None]) -> None:
        seen.append(threading.current_thread().name)
        ready()
        stop.wait()
        seen.append("stopped")

    service = ServiceThread(serve, name="weft-test-service")
    service.start()
    assert seen == ["weft-test-service"], "start() returned after ready(), while the service runs"
    stop.set()
    service.join()
    assert seen[-1] == "stopped" and service.error is None


def test_an_error_before_ready_is_raised_by_start() -> None:
    def serve(ready: Callable[[], None]) -> None:
        raise OSError("address already in use")

    service = ServiceThread(serve, name="weft-test-service")
    with pytest.raises(OSError, match="address already in use"):
        service.start()


def test_an_error_after_ready_is_kept_and_join_on_its_own_thread_returns() -> None:
    joined = threading.Event()
    go = threading.Event()
    holder: list[ServiceThread] = []

    def serve(ready: Callable[[], None]) -> None:
        ready()
        go.wait()
        holder[0].join()  # a service stopping itself: must not wait for its own thread
        joined.set()
        raise RuntimeError("lost the socket")

    service = ServiceThread(serve, name="weft-test-service")
    holder.append(service)
    service.start()
    go.set()
    service.join()
    assert joined.is_set()
    assert isinstance(service.error, RuntimeError)
