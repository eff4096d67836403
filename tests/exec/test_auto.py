"""The auto backend's rule, on whichever interpreter runs the suite."""

from __future__ import annotations

import pytest

import weft.exec
import workloads
from weft import runtime


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
