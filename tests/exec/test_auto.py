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


def test_calibrate_for_chunked_items_does_not_call_them_too_short() -> None:
    """A map stage calibrates with chunked=True: calls of 600 Python loop steps (23 us on
    the 2-core test machine, 33 us on 3.13t: under the per-call bound of 50 us, never
    under the chunked one of 5) go on to the thread trial instead of being ruled too
    short for processes. A busy machine only makes them look longer, which cannot change
    the outcome."""
    pairs = iter(enumerate([600] * 2_000))
    decision, done = weft.exec.calibrate(workloads.python_loop, pairs, workers=2, chunked=True)
    assert "too short" not in decision.reason, decision.reason
    assert done and [i for i, _ in done] == list(range(len(done)))


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


class _Clock:
    """Explicit time for BackendTrials: advanced by the test, never read from the wall."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run(trials: _auto.BackendTrials, clock: _Clock, *, chunks: int, items: int, seconds_per_item: float,
         rates: dict[str, float]) -> list[str]:
    """Hand on ``chunks`` chunks: each one ran on the current backend at ``rates`` items/s
    (delivered) and cost its worker ``seconds_per_item``. Returns the backend after each."""
    seen = []
    for _ in range(chunks):
        backend = trials.current
        clock.now += items / rates[backend]
        seen.append(trials.finished(backend, items, items * seconds_per_item))
    return seen


def test_processes_chosen_by_measuring_threads_are_held_to_the_threads_rate() -> None:
    clock = _Clock()
    trials = _auto.BackendTrials(current="process", clock=clock)
    trials.start(["process"], measured={"thread": 900.0})
    # processes deliver 600 items/s, below the 900 the threads gave: back to threads
    seen = _run(trials, clock, chunks=20, items=30, seconds_per_item=1e-3, rates={"process": 600.0, "thread": 900.0})
    assert seen[-1] == "thread"
    assert trials.decision is not None and trials.decision.backend == "thread"
    assert dict(trials.decision.throughputs or ()) == pytest.approx({"thread": 900.0, "process": 600.0})
    assert trials.rounds == 1


def test_a_function_whose_cost_changes_mid_run_is_measured_again() -> None:
    """The synthetic function costs 20 us per item on threads (threads chosen: short calls),
    then 5 ms per item, GIL-bound: threads deliver 200 items/s, processes 390."""
    clock = _Clock()
    trials = _auto.BackendTrials(current="thread", clock=clock)
    cheap = _run(trials, clock, chunks=50, items=50, seconds_per_item=20e-6,
                 rates={"thread": 40_000.0, "process": 20_000.0})
    assert set(cheap) == {"thread"} and trials.rounds == 0, "a steady cost starts no trial"
    costly = _run(trials, clock, chunks=120, items=4, seconds_per_item=5e-3,
                  rates={"thread": 200.0, "process": 390.0})
    assert trials.rounds == 1, "the cost moved by more than REDECIDE_COST_FACTOR: one round"
    assert _policy.REDECIDE_COST_FACTOR < 5e-3 / 20e-6
    assert "process" in costly and costly[-1] == "process"
    assert trials.decision is not None and trials.decision.backend == "process"
    rates = dict(trials.decision.throughputs or ())
    assert rates["process"] == pytest.approx(390.0) and rates["thread"] == pytest.approx(200.0)
    # settled: the new cost is the new baseline, so no further round while it holds
    _run(trials, clock, chunks=40, items=4, seconds_per_item=5e-3 / _policy.REDECIDE_COST_FACTOR * 1.5,
         rates={"thread": 200.0, "process": 390.0})
    assert trials.rounds == 1 and trials.current == "process"


def test_chunks_sent_before_a_trial_do_not_count_for_it() -> None:
    clock = _Clock()
    trials = _auto.BackendTrials(current="thread", clock=clock)
    trials.start(["process"], measured={"thread": 100.0})
    for _ in range(10):  # thread chunks still in flight when the trial began
        clock.now += 1.0
        assert trials.finished("thread", 1000, 1.0) == "process"
    assert trials.measuring and trials.decision is None


def test_one_slow_chunk_is_not_a_change_of_cost() -> None:
    clock = _Clock()
    trials = _auto.BackendTrials(current="thread", clock=clock)
    _run(trials, clock, chunks=20, items=10, seconds_per_item=1e-3, rates={"thread": 2000.0})
    _run(trials, clock, chunks=1, items=10, seconds_per_item=50e-3, rates={"thread": 2000.0})
    _run(trials, clock, chunks=20, items=10, seconds_per_item=1e-3, rates={"thread": 2000.0})
    assert trials.rounds == 0 and trials.current == "thread"


@pytest.mark.parametrize(("backend", "moved"), [("thread", 1 / 10), ("process", 10.0)])
def test_a_cost_change_that_only_favours_the_backend_in_use_starts_no_round(backend: str, moved: float) -> None:
    """Threads whose calls grow 10x cheaper (the first large results of a stage cost more,
    in page faults, than the later ones), or processes whose calls grow 10x costlier: the
    other backend only loses more, so nothing is measured again."""
    clock = _Clock()
    trials = _auto.BackendTrials(current=backend, clock=clock)
    _run(trials, clock, chunks=20, items=10, seconds_per_item=1e-3, rates={backend: 2000.0})
    seen = _run(trials, clock, chunks=40, items=10, seconds_per_item=1e-3 * moved, rates={backend: 2000.0})
    assert trials.rounds == 0 and set(seen) == {backend}


def test_processes_whose_calls_grow_cheaper_are_measured_against_threads_again() -> None:
    clock = _Clock()
    trials = _auto.BackendTrials(current="process", clock=clock)
    _run(trials, clock, chunks=20, items=10, seconds_per_item=5e-3, rates={"process": 390.0, "thread": 200.0})
    seen = _run(trials, clock, chunks=800, items=50, seconds_per_item=20e-6,
                rates={"process": 20_000.0, "thread": 40_000.0})
    assert trials.rounds == 1 and seen[-1] == "thread"
