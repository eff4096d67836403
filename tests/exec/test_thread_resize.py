"""ThreadExecutor.resize: more or fewer threads while running, no call lost, run twice
or handed to the wrong future. Synchronised with events and barriers."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

from conftest import wait_until
from weft.errors import ConfigError, ExecutorClosed
from weft.exec import ThreadExecutor

GUARD = 30.0  # seconds a barrier or event may take before the test fails (never reached)


def _pool(ex: ThreadExecutor) -> list[threading.Thread]:
    return list(ex._threads)


def test_growing_runs_the_new_threads_at_once() -> None:
    with ThreadExecutor(workers=1) as ex:
        assert ex.submit(int, "1").result() == 1
        ex.resize(4)
        assert ex.threads == 4 and ex.workers == 4
        barrier = threading.Barrier(4, timeout=GUARD)  # passes only with 4 calls running at once
        futures = [ex.submit(barrier.wait) for _ in range(4)]
        assert sorted(f.result(GUARD) for f in futures) == [0, 1, 2, 3]


def test_shrinking_finishes_every_queued_call_then_retires_threads() -> None:
    release = threading.Event()
    started = threading.Barrier(4, timeout=GUARD)

    def held(i: int) -> int:
        started.wait()
        release.wait(GUARD)
        return i * 10

    ex = ThreadExecutor(workers=3)
    try:
        running = [ex.submit(held, i) for i in range(3)]
        started.wait()  # all three threads are inside a call
        before = _pool(ex)
        ex.resize(1)
        assert ex.threads == 1 and ex.workers == 1
        queued = [ex.submit(lambda i=i: i * 10) for i in range(3, 8)]  # behind the retire signals
        release.set()
        assert [f.result(GUARD) for f in running + queued] == [i * 10 for i in range(8)]
        # two of the three end as they take the retire signals; one stays
        assert wait_until(lambda: sum(t.is_alive() for t in before) == 1, timeout=GUARD)
        assert _pool(ex) == [t for t in before if t.is_alive()]
    finally:
        ex.close()
    assert not any(t.is_alive() for t in before)


def test_resizing_under_a_map_loses_duplicates_and_reorders_nothing() -> None:
    calls: Counter[int] = Counter()
    lock = threading.Lock()

    def record(i: int) -> int:
        with lock:
            calls[i] += 1
        return i * i

    sizes = iter([8, 2, 16, 1, 5, 3] * 50)
    with ThreadExecutor(workers=4) as ex:
        out = []
        for k, value in enumerate(ex.map(record, range(3000), max_in_flight=64)):
            out.append(value)
            if k % 50 == 0:
                ex.resize(next(sizes))
        assert ex.threads == ex.workers
    assert out == [i * i for i in range(3000)]
    assert calls == Counter(range(3000)), "each call ran exactly once"


def test_resize_before_first_use_and_after_close() -> None:
    ex = ThreadExecutor(workers=2)
    ex.resize(3)
    assert ex.threads == 0  # threads start at first use...
    assert ex.submit(int, "7").result() == 7
    assert ex.threads == 3  # ...at the new count
    with pytest.raises(ConfigError, match="workers must be an integer >= 1, got 0"):
        ex.resize(0)
    ex.close()
    with pytest.raises(ExecutorClosed, match="closed: create a new one to resize it"):
        ex.resize(4)
