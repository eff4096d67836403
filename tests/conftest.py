"""Shared fixtures: every test can ask that it leaves nothing behind."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

SHM_DIR = "/dev/shm"


def child_pids() -> set[int]:
    """Live (non-zombie) processes this one started, read from /proc: its children and
    the children of multiprocessing's fork server (process workers start there), but not
    the server itself nor multiprocessing's resource tracker, which live as long as this
    process once started."""
    from multiprocessing import forkserver, resource_tracker

    me = os.getpid()
    server = getattr(forkserver._forkserver, "_forkserver_pid", None)
    tracker = getattr(resource_tracker._resource_tracker, "_pid", None)
    parents = {me} if server is None else {me, server}
    found: set[int] = set()
    try:
        entries = os.listdir("/proc")
    except FileNotFoundError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[1]) in parents:
            found.add(int(entry))
    return found - {server, tracker}


def weft_segments() -> set[str]:
    if not os.path.isdir(SHM_DIR):
        return set()
    return {n for n in os.listdir(SHM_DIR) if n.startswith(f"weft-{os.getpid()}-")}


def weft_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("weft-") and t.is_alive()}


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until true or ``timeout``; for conditions with no event to wait on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def consume_in_thread(results: Iterable[Any]) -> tuple[threading.Thread, list[Any], list[BaseException]]:
    """Iterate ``results`` in a new thread (started): the thread, what it got so far, and
    the exception that ended it, if one did (a test kills a worker meanwhile)."""
    out: list[Any] = []
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            out.extend(results)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=consume, name="test-consumer")
    thread.start()
    return thread, out, errors


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Fail the test if it leaves weft threads, child processes or shm segments behind."""
    threads_before = weft_threads()
    children_before = child_pids()
    yield
    assert wait_until(lambda: not (weft_threads() - threads_before)), \
        f"threads left behind: {weft_threads() - threads_before}"
    assert wait_until(lambda: not (child_pids() - children_before)), \
        f"child processes left behind: {child_pids() - children_before}"
    # A worker of an executor that outlives the test (a module-scoped one restarting a
    # worker) names its result pool under /dev/shm until the owner maps it: in use, not left.
    assert wait_until(lambda: not segments_left()), f"shared memory left behind: {segments_left()}"


def segments_left() -> set[str]:
    """This process's segments, but for the result pools of worker processes still running."""
    running = child_pids()
    return {n for n in weft_segments() if not (n.endswith("-pool") and int(n.split("-")[2]) in running)}


# One local multi-node cluster per engine and test session, started on first use by
# any test module that asks for it (see cluster_fixtures); they skip where the engine
# is not installed.
@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    from cluster_fixtures import ray_test_cluster

    with ray_test_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[Any]:
    from cluster_fixtures import dask_test_cluster

    with dask_test_cluster() as cluster:
        yield cluster


# The free-threaded leg exists to run the suite with the GIL off. An extension module
# that does not declare itself free-threading safe turns the GIL back on when imported,
# silently; say so at the end rather than let the leg pass as GIL-free when it was not.
_GIL_AT_START: bool | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _GIL_AT_START
    _GIL_AT_START = getattr(sys, "_is_gil_enabled", lambda: True)()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _GIL_AT_START is False and sys._is_gil_enabled():
        terminalreporter.write_line(
            "weft: the GIL was re-enabled during this session by an imported extension; "
            "tests after that import ran with the GIL on", yellow=True)
