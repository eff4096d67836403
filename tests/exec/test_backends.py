"""The execution protocol, checked against every backend."""

from __future__ import annotations

import threading
import traceback

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import weft.exec
import workloads
from conftest import wait_until
from weft.errors import ConfigError, ExecutorClosed

BACKENDS = ["serial", "thread", "process"]


@pytest.fixture(scope="module", params=BACKENDS)
def executor(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    ex = weft.exec.create(request.param, workers=2)
    yield ex
    ex.close()


def test_ordered_results_follow_input_order(executor: weft.exec.Executor) -> None:
    assert list(executor.map(workloads.slow_square, range(20))) == [x * x for x in range(20)]


def test_unordered_results_are_the_same_multiset(executor: weft.exec.Executor) -> None:
    pairs = list(executor.map_indexed(workloads.slow_square, range(20), ordered=False))
    assert sorted(pairs) == [(i, i * i) for i in range(20)]


def test_exception_carries_item_and_original_traceback(executor: weft.exec.Executor) -> None:
    with pytest.raises(ValueError, match="three is not allowed") as info:
        list(executor.map(workloads.fail_on_three, range(6)))
    notes = getattr(info.value, "__notes__", [])
    assert any("item #3" in note and "fail_on_three" in note for note in notes), notes
    text = "".join(traceback.format_exception(info.value))
    assert "raise ValueError" in text  # the frame inside the user function is kept


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(xs=st.lists(st.integers(-1000, 1000), max_size=40), ordered=st.booleans(),
       window=st.integers(1, 8))
def test_map_equals_serial(executor: weft.exec.Executor, xs: list[int], ordered: bool, window: int) -> None:
    got = list(executor.map_indexed(workloads.square, xs, ordered=ordered, max_in_flight=window))
    expected = [(i, x * x) for i, x in enumerate(xs)]
    assert (got if ordered else sorted(got)) == expected


def test_in_flight_is_bounded(executor: weft.exec.Executor) -> None:
    pulled = 0

    def source():  # type: ignore[no-untyped-def]
        nonlocal pulled
        for i in range(1000):
            pulled += 1
            yield i

    results = executor.map(workloads.square, source(), max_in_flight=3)
    assert next(results) == 0
    assert pulled <= 4  # one consumed plus at most three started
    results.close()


def test_statistics_count_work(executor: weft.exec.Executor) -> None:
    # calls abandoned by earlier tests may still be finishing
    assert wait_until(lambda: executor.statistics().in_flight == 0, timeout=60)
    before = executor.statistics()
    list(executor.map(workloads.square, range(10)))
    with pytest.raises(ValueError):
        list(executor.map(workloads.fail_on_three, [3]))
    after = executor.statistics()
    assert after.submitted - before.submitted == 11
    assert after.completed - before.completed == 10
    assert after.failed - before.failed == 1
    assert after.in_flight == 0
    assert after.busy_seconds >= before.busy_seconds
    assert 0.0 <= after.busy_fraction <= 1.0


def test_arrays_round_trip(executor: weft.exec.Executor) -> None:
    big = np.random.default_rng(0).random((300, 400))  # 960 KB: travels through shared memory
    small = np.arange(10)
    strided = big[::2, ::3]
    for a in (big, small, strided):
        np.testing.assert_array_equal(executor.submit(workloads.double_array, a).result(), a * 2)
    out = executor.submit(workloads.array_stats, {"x": big}).result()
    np.testing.assert_array_equal(out["echo"], big)
    assert out["shape"] == big.shape


@pytest.mark.parametrize("backend", BACKENDS)
def test_close_is_idempotent_and_refuses_new_work(backend: str, no_leaks: None) -> None:
    ex = weft.exec.create(backend, workers=2)
    assert ex.submit(workloads.square, 3).result() == 9
    ex.close()
    ex.close()
    with pytest.raises(ExecutorClosed, match="closed"):
        ex.submit(workloads.square, 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_early_break_leaves_nothing_behind(backend: str, no_leaks: None) -> None:
    with weft.exec.create(backend, workers=2) as ex:
        for i, arr in enumerate(ex.map(workloads.make_array, [100_000] * 50)):
            assert arr.shape == (100_000,)
            if i == 3:
                break
        stats = ex.statistics()
    assert stats.submitted < 50


@pytest.mark.parametrize("backend", BACKENDS)
def test_consumer_exception_leaves_nothing_behind(backend: str, no_leaks: None) -> None:
    with pytest.raises(KeyError), weft.exec.create(backend, workers=2) as ex:
        for _ in ex.map(workloads.make_array, [100_000] * 20):
            raise KeyError("consumer failed")


def test_bad_arguments_name_the_value() -> None:
    with pytest.raises(ConfigError, match="workers must be an integer >= 1, got 0"):
        weft.exec.create("thread", workers=0)
    with pytest.raises(ConfigError, match="workers must be an integer >= 1, got True"):
        weft.exec.create("thread", workers=True)
    with pytest.raises(ConfigError, match="unknown backend 'gpu'"):
        weft.exec.create("gpu")
    with weft.exec.create("thread", workers=1) as ex, \
            pytest.raises(ConfigError, match="max_in_flight must be an integer >= 1, got 0"):
        ex.map(workloads.square, [1], max_in_flight=0)
    with pytest.raises(ConfigError, match="max_retries must be an integer >= 0, got -1"):
        weft.exec.create("process", workers=1, max_retries=-1)
    with pytest.raises(ConfigError, match=r"start_method must be one of .*'spawn'.*, got 'teleport'"):
        weft.exec.create("process", workers=1, start_method="teleport")


def test_statistics_count_a_call_whose_callbacks_have_not_run_yet() -> None:
    """A Future wakes its waiters before it runs its done-callbacks, so a caller can hold
    a result whose callback has not counted it yet; statistics() must count it anyway, once."""
    from concurrent.futures import Future

    class LateCallbacks(Future):  # type: ignore[type-arg]
        def __init__(self) -> None:
            super().__init__()
            self.late: list = []  # type: ignore[type-arg]

        def add_done_callback(self, fn) -> None:  # type: ignore[no-untyped-def]
            self.late.append(fn)

    class Deferred(weft.exec.Executor):
        backend = "deferred"

        def _submit(self, fn, args, kwargs):  # type: ignore[no-untyped-def]
            future = LateCallbacks()
            future.set_running_or_notify_cancel()
            future.set_result(fn(*args, **kwargs))
            return future

        def _shutdown(self, *, cancel: bool, timeout: float | None) -> None:
            return None

    with Deferred(workers=1) as ex:
        future = ex.submit(workloads.square, 3)
        assert future.result() == 9 and future.late, "the executor's callback is still to run"
        stats = ex.statistics()
        assert (stats.submitted, stats.completed, stats.in_flight) == (1, 1, 0)
        for callback in future.late:
            callback(future)
        assert ex.statistics().completed == 1  # counted once


def test_thread_close_cancels_queued_work(no_leaks: None) -> None:
    ex = weft.exec.create("thread", workers=1)
    gate, started, last_cancelled = threading.Event(), threading.Event(), threading.Event()

    def hold() -> bool:
        started.set()
        return gate.wait(30)

    first = ex.submit(hold)
    assert started.wait(30)
    queued = [ex.submit(workloads.square, i) for i in range(5)]
    queued[-1].add_done_callback(lambda f: last_cancelled.set())
    closer = threading.Thread(target=ex.close)
    closer.start()
    # The running call is released only once close() has cancelled the queue (it cancels
    # in order): the queued calls must then never start.
    assert last_cancelled.wait(30)
    gate.set()
    closer.join(30)
    assert first.result() is True
    assert not closer.is_alive(), "close() must return once the running call finishes"
    assert all(f.cancelled() for f in queued)


def test_thread_close_never_starts_a_call_a_worker_takes_after_cancellation_began(no_leaks: None) -> None:
    """The window: a worker that finishes its call while close(cancel=True) runs takes the
    next queued call before close() reached it. That call must be cancelled, not started."""
    from weft.exec._thread import ThreadExecutor

    ex = ThreadExecutor(workers=1)
    gate, started, closing, taken = (threading.Event() for _ in range(4))

    def hold() -> bool:
        started.set()
        return gate.wait(30)

    class Queue:
        """The executor's queue, with close()'s first look at it paused until the worker
        has taken the next call (the interleaving that opened the window)."""

        def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
            self.inner = inner

        def get(self):  # type: ignore[no-untyped-def]
            task = self.inner.get()
            if task is not None and task[0] is queued:
                taken.set()
            return task

        def get_nowait(self):  # type: ignore[no-untyped-def]
            closing.set()
            assert taken.wait(30)
            return self.inner.get_nowait()

        def put(self, item) -> None:  # type: ignore[no-untyped-def]
            self.inner.put(item)

    first = ex.submit(hold)
    assert started.wait(30)
    queued = ex.submit(workloads.square, 7)
    ex._queue = Queue(ex._queue)  # type: ignore[assignment]
    closer = threading.Thread(target=ex.close)
    closer.start()
    assert closing.wait(30)  # close(cancel=True) has begun
    gate.set()  # the worker finishes hold() and takes the queued call
    closer.join(30)
    assert not closer.is_alive()
    assert first.result() is True
    assert queued.cancelled()
    assert ex.statistics().cancelled == 1


def test_thread_close_racing_submit_never_strands_work(no_leaks: None) -> None:
    """Every future submitted while another thread closes either finishes or is cancelled."""
    def submitter(ex: weft.exec.Executor, barrier: threading.Barrier, futures: list) -> None:  # type: ignore[type-arg]
        barrier.wait()
        for i in range(20):
            try:
                futures.append(ex.submit(workloads.square, i))
            except ExecutorClosed:
                return

    for _ in range(50):
        ex = weft.exec.create("thread", workers=2)
        barrier = threading.Barrier(2)
        futures: list = []  # type: ignore[type-arg]
        thread = threading.Thread(target=submitter, args=(ex, barrier, futures))
        thread.start()
        barrier.wait()
        ex.close()
        thread.join(10)
        assert not thread.is_alive()
        for future in futures:
            assert future.cancelled() or future.result(timeout=10) is not None


#: Clock granularity between the wall and CPU clocks of one call: CPU time of one thread
#: cannot exceed its wall time, but the two clocks are read one after the other.
CLOCK_SLACK_SECONDS = 0.01


@pytest.mark.parametrize("backend", ["serial", "thread", "process"])
def test_cpu_seconds_separate_computing_from_waiting(backend: str) -> None:
    # A sleeping call is busy but computes almost nothing; a Python loop computes. The
    # first call in a fresh process worker also imports `workloads` (and NumPy) while
    # unpickling: that is not part of the call and must not be counted.
    with weft.exec.create(backend, workers=1) as ex:
        ex.submit(workloads.sleep_for, 0.2).result(timeout=30)
        waited = ex.statistics()
        ex.submit(workloads.python_loop, 2_000_000).result(timeout=60)
        computed = ex.statistics()
    # Sleeping takes at least its time however busy the machine, and almost no CPU: the
    # bound is half the busy time, while the call computes for microseconds.
    assert waited.busy_seconds >= 0.2 and waited.cpu_seconds < 0.5 * waited.busy_seconds
    cpu = computed.cpu_seconds - waited.cpu_seconds
    assert 0.0 < cpu <= computed.busy_seconds - waited.busy_seconds + CLOCK_SLACK_SECONDS
    assert computed.computing_cores == computed.cpu_seconds / computed.elapsed_seconds


def test_process_busy_time_is_the_call_alone() -> None:
    # Unpickling the argument takes 0.3 s in the worker and pickling the result 0.3 s more;
    # the call itself returns at once. None of that 0.6 s is the call's.
    slow = workloads.SlowToPickle(0.3)
    with weft.exec.create("process", workers=1) as ex:
        back = ex.submit(workloads.identity, slow).result(timeout=60)
        stats = ex.statistics()
    assert isinstance(back, workloads.SlowToPickle) and back.seconds == 0.3
    assert stats.completed == 1
    assert stats.busy_seconds < 0.3 and stats.cpu_seconds < 0.3
