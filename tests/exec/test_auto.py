"""The auto backend's rule, on whichever interpreter runs the suite."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import weft.exec
import workloads
from weft import runtime
from weft.exec import _auto, _policy


def test_auto_uses_threads_when_the_gil_is_off() -> None:
    if runtime.gil_enabled():
        pytest.skip("needs a free-threaded build with the GIL off")
    with weft.exec.create("auto", workers=2) as ex:
        assert list(ex.map(workloads.python_loop, [20_000] * 8)) == [workloads.python_loop(20_000)] * 8
        assert ex.chosen == "thread"
        assert "GIL is off" in ex.statistics().reason


@pytest.mark.skipif(not runtime.gil_enabled(), reason="calibration only runs on a GIL build")
@pytest.mark.skipif(runtime.usable_cores() < 2, reason="needs two usable cores")
def test_auto_measures_gil_bound_python_and_picks_processes() -> None:
    with weft.exec.create("auto", workers=2) as ex:
        out = list(ex.map(workloads.python_loop, [200_000] * 40))
        assert out == [workloads.python_loop(200_000)] * 40
        assert ex.chosen == "process", ex.statistics().reason
        assert ex.calibration is not None and ex.calibration.thread_efficiency is not None
        assert "holds the GIL" in ex.statistics().reason


@pytest.mark.skipif(not runtime.gil_enabled(), reason="calibration only runs on a GIL build")
@pytest.mark.skipif(runtime.usable_cores() < 2, reason="needs two usable cores")
def test_auto_measures_gil_releasing_calls_and_picks_threads() -> None:
    with weft.exec.create("auto", workers=2) as ex:
        out = list(ex.map(workloads.sleep_for, [0.004] * 60))
        assert out == [0.004] * 60
        assert ex.chosen == "thread", ex.statistics().reason


def test_auto_keeps_indices_and_order_across_calibration() -> None:
    with weft.exec.create("auto", workers=2) as ex:
        pairs = list(ex.map_indexed(workloads.slow_square, range(100)))
    assert pairs == [(i, i * i) for i in range(100)]


def test_auto_unordered_returns_everything_once() -> None:
    with weft.exec.create("auto", workers=2) as ex:
        pairs = sorted(ex.map_indexed(workloads.slow_square, range(100), ordered=False))
    assert pairs == [(i, i * i) for i in range(100)]


def test_auto_runs_an_unpicklable_function_on_threads() -> None:
    with weft.exec.create("auto", workers=2) as ex:
        assert list(ex.map(lambda x: x + 1, range(10))) == list(range(1, 11))
        assert ex.chosen == "thread"
        reason = ex.statistics().reason
    if runtime.gil_enabled() and runtime.usable_cores() >= 2:
        assert "cannot be pickled" in reason, reason


def test_auto_submit_before_map_follows_the_policy() -> None:
    with weft.exec.create("auto", workers=2) as ex:
        assert ex.submit(workloads.square, 5).result(timeout=60) == 25
        expected = _policy.interpreter_rule(2) or _policy.unmeasured()
        assert (ex.chosen, ex.statistics().reason) == (expected.backend, expected.reason)


def test_calibrate_thresholds_as_arguments_are_deprecated_but_honoured() -> None:
    pairs = iter(enumerate([1_000] * 40))
    with pytest.warns(DeprecationWarning, match="min_process_item_seconds"):
        decision, done = weft.exec.calibrate(workloads.python_loop, pairs, workers=2,
                                             min_process_item_seconds=60.0)
    assert decision.backend == "thread" and "too short" in decision.reason
    assert [i for i, _ in done] == list(range(len(done))) and done
    with pytest.raises(TypeError, match="unexpected keyword"):
        weft.exec.calibrate(workloads.square, iter([]), workers=2, min_cores=1)


def test_calibrate_with_no_or_few_items() -> None:
    decision, done = weft.exec.calibrate(workloads.square, iter([]), workers=2)
    assert (decision.backend, decision.reason, done) == ("thread", "no items to measure: threads", [])
    decision, done = weft.exec.calibrate(workloads.square, iter(enumerate([3, 4])), workers=2)
    assert decision.reason == "too few items to measure: threads"
    assert done == [(0, 9), (1, 16)]


@pytest.fixture
def busy_machine() -> Iterator[int]:
    """Two CPU-bound processes per usable core for the test's duration (a busy CI runner)."""
    import subprocess
    import sys

    hog = "import os, sys\nwhile os.getppid() == int(sys.argv[1]):\n    sum(range(100_000))\n"
    count = 2 * runtime.usable_cores()
    hogs = [subprocess.Popen([sys.executable, "-c", hog, str(os.getpid())]) for _ in range(count)]
    try:
        yield count
    finally:
        for p in hogs:
            p.kill()
        for p in hogs:
            p.wait()


@pytest.mark.slow
@pytest.mark.skipif(_auto._waiting_for_cpu() is None, reason="needs the scheduler's run-queue time (Linux)")
def test_calibration_on_a_busy_machine_does_not_take_computing_for_waiting(busy_machine: int) -> None:
    # With two CPU-bound processes per core, a CPU-bound call gets well under half of the
    # wall time on a CPU; the time it spends waiting for one is not I/O.
    decision, _ = weft.exec.calibrate(workloads.python_loop, iter(enumerate([100_000] * 200)), workers=2)
    assert "waiting (I/O)" not in decision.reason, decision.reason
    if runtime.gil_enabled():
        assert decision.backend == "process", decision.reason
