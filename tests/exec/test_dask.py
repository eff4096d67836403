"""The dask backend on a local cluster of two single-threaded worker processes
(started once per session by the ``dask_cluster`` fixture)."""

from __future__ import annotations

import functools
import itertools
import os
import signal
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster_fixtures import DASK_SKIP, process_gone

pytest.importorskip("distributed", reason=DASK_SKIP)

import dask

import cluster_workloads as cw
import weft.exec
import workloads
from conftest import child_pids, consume_in_thread, wait_until, weft_threads
from weft.errors import ConfigError, WorkerDied
from weft.exec._cluster import ClusterStatistics, ClusterTimeout
from weft.exec._dask import SCATTER_MIN_BYTES

#: Generous bounds on waits for the cluster to reach a state; they hold on a loaded
#: machine and only decide how long a broken test takes to fail.
SETTLE_SECONDS = 60.0


def weft_keys(cluster: Any) -> list[str]:
    """Tasks and data weft left on the scheduler (it runs in this process)."""
    return [str(k) for k in cluster.scheduler.tasks if str(k).startswith("weft-")]


@pytest.fixture
def nothing_left(dask_cluster: Any) -> Iterator[None]:
    """After the test: no weft task or scattered data on the scheduler, no weft thread."""
    threads_before = weft_threads()
    yield
    assert wait_until(lambda: not weft_keys(dask_cluster), SETTLE_SECONDS), weft_keys(dask_cluster)
    assert wait_until(lambda: not (weft_threads() - threads_before)), weft_threads() - threads_before


@pytest.fixture
def released(tmp_path: Path) -> Iterator[Path]:
    """A marker directory whose ``release`` file is created at the end, whatever happens:
    a Dask worker thread cannot be interrupted, and a blocked call would hold it."""
    yield tmp_path
    (tmp_path / "release").touch()


@pytest.fixture(scope="module")
def executor(dask_cluster: Any) -> Iterator[weft.exec.Executor]:
    ex = weft.exec.create("dask", workers=2, address=dask_cluster.scheduler_address)
    yield ex
    ex.close()


def create(cluster: Any, **options: Any) -> weft.exec.Executor:
    return weft.exec.create("dask", address=cluster.scheduler_address, **options)


# --------------------------------------------------------------------------- the protocol
def test_ordered_and_unordered_results(executor: weft.exec.Executor) -> None:
    assert list(executor.map(workloads.square, range(20))) == [x * x for x in range(20)]
    pairs = list(executor.map_indexed(workloads.square, range(20), ordered=False))
    assert sorted(pairs) == [(i, i * i) for i in range(20)]


def test_exception_carries_item_and_remote_traceback(executor: weft.exec.Executor) -> None:
    with pytest.raises(ValueError, match="three is not allowed") as info:
        list(executor.map(workloads.fail_on_three, range(6)))
    notes = getattr(info.value, "__notes__", [])
    assert any("item #3" in note and "fail_on_three" in note for note in notes), notes
    assert "raise ValueError" in "".join(traceback.format_exception(info.value))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(xs=st.lists(st.integers(-1000, 1000), max_size=30), ordered=st.booleans(), window=st.integers(1, 6))
def test_map_equals_serial(executor: weft.exec.Executor, xs: list[int], ordered: bool, window: int) -> None:
    got = list(executor.map_indexed(workloads.square, xs, ordered=ordered, max_in_flight=window))
    expected = [(i, x * x) for i, x in enumerate(xs)]
    assert (got if ordered else sorted(got)) == expected


def test_statistics_count_calls_per_worker(executor: weft.exec.Executor, dask_cluster: Any) -> None:
    assert wait_until(lambda: executor.statistics().on_cluster == 0, SETTLE_SECONDS)
    before = executor.statistics()
    assert list(executor.map(workloads.square, range(12))) == [x * x for x in range(12)]
    after = executor.statistics()
    assert isinstance(after, ClusterStatistics) and after.backend == "dask"
    assert after.completed - before.completed == 12
    assert sum(after.nodes.values()) - sum(before.nodes.values()) == 12
    assert set(after.nodes) <= set(dask_cluster.scheduler.workers)


def test_arrays_travel_and_come_back_writable(executor: weft.exec.Executor) -> None:
    small = np.arange(1000.0)
    large = np.arange(SCATTER_MIN_BYTES // 8 + 1, dtype=np.float64)  # scattered, not sent in the task
    out = list(executor.map(cw.doubled, [small, large]))  # no "large graph" warning: warnings are errors
    assert np.array_equal(out[0], small * 2) and np.array_equal(out[1], large * 2)
    assert all(a.flags.writeable for a in out)


# --------------------------------------------------------------------------- bounds
def _never_overlap(spans: list[tuple[float, float]]) -> bool:
    return all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))


def test_calls_on_the_cluster_are_bounded_in_items(dask_cluster: Any, nothing_left: None) -> None:
    with create(dask_cluster, workers=2, max_in_flight=1) as ex:
        results = list(ex.map(cw.timed_square, range(6), max_in_flight=6))
    assert [r[0] for r in results] == [x * x for x in range(6)]
    assert _never_overlap([(r[1], r[2]) for r in results])


def test_calls_on_the_cluster_are_bounded_in_bytes(dask_cluster: Any, nothing_left: None) -> None:
    arrays = [np.full(75_000, float(i)) for i in range(4)]  # 600 kB each, bound 1 MB: one at a time
    with create(dask_cluster, workers=2, max_in_flight_bytes=1_000_000) as ex:
        results = list(ex.map(cw.timed_sum, arrays, max_in_flight=4))
    assert [r[0] for r in results] == [75_000.0 * i for i in range(4)]
    assert _never_overlap([(r[1], r[2]) for r in results])


# --------------------------------------------------------------------------- what travels how
def test_callable_object_is_sent_once_and_built_once_per_worker(dask_cluster: Any, tmp_path: Path,
                                                                nothing_left: None) -> None:
    cw.Model.pickled = 0
    model = cw.Model(str(tmp_path), offset=1)
    with create(dask_cluster, workers=2) as ex:
        results = list(ex.map(model, range(20)))
    assert [r[0] for r in results] == [x * x + 1 for x in range(20)]
    built_in = [b["pid"] for b in cw.markers(str(tmp_path), "built-").values()]
    # Built per worker, not per call: 20 calls, 2 workers. Dask itself may deserialize a
    # broadcast replica a second time on a worker (seen once in many runs when it also
    # fetched the replica from its peer), so the bound is per worker, with that margin.
    assert 1 <= len(set(built_in)) <= 2 and len(built_in) <= 4
    assert {r[1] for r in results} <= set(built_in)
    assert cw.Model.pickled == 1  # scattered once


def test_function_carrying_data_is_sent_once(dask_cluster: Any, nothing_left: None) -> None:
    cw.Payload.pickled = 0
    fn = functools.partial(cw.payload_size, cw.Payload(200_000))
    with create(dask_cluster, workers=2) as ex:
        assert list(ex.map(fn, range(20))) == [200_000 + x for x in range(20)]
    assert cw.Payload.pickled == 1


# --------------------------------------------------------------------------- nothing left behind
def test_early_break_and_exceptions_leave_nothing(dask_cluster: Any, nothing_left: None) -> None:
    with create(dask_cluster, workers=2) as ex:
        results = ex.map(workloads.square, range(1000))
        assert [next(results) for _ in range(3)] == [0, 1, 4]
        results.close()
        with pytest.raises(ValueError):
            list(ex.map(workloads.fail_on_three, range(40)))
        assert wait_until(lambda: ex.statistics().on_cluster == 0, SETTLE_SECONDS)


def test_close_cancels_outstanding_calls(dask_cluster: Any, nothing_left: None, released: Path) -> None:
    ex = create(dask_cluster, workers=2)
    futures = [ex.submit(cw.wait_for_release, str(released), x) for x in range(4)]
    assert wait_until(lambda: len(cw.markers(str(released), "started-")) == 2, SETTLE_SECONDS)
    ex.close(timeout=0.5)
    assert all(f.cancelled() for f in futures)
    assert ex.statistics().cancelled == 4


def test_timeout_when_a_call_hangs(dask_cluster: Any, nothing_left: None, released: Path) -> None:
    with create(dask_cluster, workers=1, timeout=0.5) as ex:
        future = ex.submit(cw.wait_for_release, str(released), 7)
        with pytest.raises(ClusterTimeout, match=r"wait_for_release\(.*, 7\)") as info:
            future.result(timeout=SETTLE_SECONDS)
    assert "2 workers with 2 threads" in str(info.value)


def _worker_processes() -> set[int]:
    """This process's children, less multiprocessing's resource tracker (which stays)."""
    found = set()
    for pid in child_pids():
        try:
            if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(pid)
        except OSError:
            pass  # exited meanwhile
    return found


def test_own_local_cluster_is_closed_with_the_executor() -> None:
    before = _worker_processes()
    with weft.exec.create("dask", workers=2) as ex:
        assert list(ex.map(workloads.square, range(8))) == [x * x for x in range(8)]
        assert len(_worker_processes() - before) >= 2  # its worker processes
        assert len(set(ex.statistics().nodes)) <= 2
    assert wait_until(lambda: not (_worker_processes() - before), SETTLE_SECONDS), _worker_processes() - before


def test_scheduler_address_from_dask_configuration(dask_cluster: Any, nothing_left: None) -> None:
    with dask.config.set({"scheduler-address": dask_cluster.scheduler_address}), \
            weft.exec.create("dask", workers=1) as ex:
        assert ex.address == dask_cluster.scheduler_address  # type: ignore[attr-defined]
        assert ex.submit(workloads.square, 5).result(timeout=SETTLE_SECONDS) == 25


# --------------------------------------------------------------------------- a worker dies
def _wait_for_both_workers_idle(cluster: Any) -> None:
    """Both workers registered, running and idle: the scheduler then hands a map's first
    two calls one to each. Right after a test killed a worker, its nanny's restart may
    still be joining, and both calls would queue on the survivor, one behind the other."""
    from distributed.core import Status

    def ready() -> bool:
        workers = list(cluster.scheduler.workers.values())
        return len(workers) == 2 and all(w.status == Status.running and not w.processing for w in workers)

    assert wait_until(ready, SETTLE_SECONDS), cluster.scheduler.workers


def _kill_one_busy_worker(directory: Path) -> tuple[int, set[int]]:
    """Once both workers run a call, SIGKILL one of them; its pid and the items it held."""
    assert wait_until(lambda: len({m["pid"] for m in cw.markers(str(directory), "started-").values()}) == 2,
                      SETTLE_SECONDS)
    started = cw.markers(str(directory), "started-")
    victim = min(m["pid"] for m in started.values())
    os.kill(victim, signal.SIGKILL)
    assert wait_until(lambda: process_gone(victim), SETTLE_SECONDS)
    return victim, {int(name.split("-")[1]) for name, m in started.items() if m["pid"] == victim}


@pytest.mark.slow
@pytest.mark.parametrize("ordered", [True, False])
def test_worker_killed_mid_map_loses_nothing(dask_cluster: Any, ordered: bool, nothing_left: None,
                                             released: Path) -> None:
    fn = functools.partial(cw.wait_for_release, str(released))
    _wait_for_both_workers_idle(dask_cluster)
    with create(dask_cluster, workers=2, max_retries=1) as ex:
        thread, out, errors = consume_in_thread(ex.map_indexed(fn, range(8), ordered=ordered))
        _kill_one_busy_worker(released)
        (released / "release").touch()
        thread.join(SETTLE_SECONDS)
        assert not thread.is_alive() and not errors, errors
        stats = ex.statistics()
    expected = [(i, i * i) for i in range(8)]
    assert (out if ordered else sorted(out)) == expected  # every item exactly once
    assert stats.retried >= 1 and stats.completed == 8
    assert wait_until(lambda: len(dask_cluster.scheduler.workers) == 2, SETTLE_SECONDS)  # the nanny restarted it


@pytest.mark.slow
def test_worker_killed_after_max_retries_raises_worker_died(dask_cluster: Any, nothing_left: None,
                                                           released: Path) -> None:
    fn = functools.partial(cw.wait_for_release, str(released))
    _wait_for_both_workers_idle(dask_cluster)
    with create(dask_cluster, workers=2, max_retries=0) as ex:
        thread, _out, errors = consume_in_thread(ex.map(fn, range(2)))
        _victim, doomed = _kill_one_busy_worker(released)
        (released / "release").touch()
        thread.join(SETTLE_SECONDS)
    assert not thread.is_alive() and len(errors) == 1
    error = errors[0]
    assert isinstance(error, WorkerDied), repr(error)
    [x] = doomed
    assert error.items == (f"wait_for_release({x},)",)
    assert any(f"item #{x}" in note for note in getattr(error, "__notes__", []))
    assert wait_until(lambda: len(dask_cluster.scheduler.workers) == 2, SETTLE_SECONDS)


# --------------------------------------------------------------------------- options and doctor
@pytest.mark.parametrize(("options", "named"), [
    ({"workers": 0}, "workers"),
    ({"workers": 1, "max_retries": -1}, "max_retries"),
    ({"workers": 1, "timeout": -1}, "timeout"),
    ({"workers": 1, "max_in_flight_bytes": 0}, "max_in_flight_bytes"),
    ({"workers": 1, "address": ""}, "address"),
])
def test_bad_options_name_the_value(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        weft.exec.create("dask", **options)


def test_doctor_reports_the_scheduler(dask_cluster: Any) -> None:
    from weft.exec._cluster_info import probe_dask

    info = probe_dask(address=dask_cluster.scheduler_address)
    assert info.reachable, info.note
    assert (info.nodes, info.cpus, info.gpus) == (2, 2, 0)
    assert info.memory_bytes > 0 and info.backend == "dask" and info.workers == 2
