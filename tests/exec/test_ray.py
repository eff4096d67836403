"""The ray backend on a local multi-node cluster (a head and two one-CPU worker nodes,
started once per session by the ``ray_cluster`` fixture)."""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster_fixtures import (
    RAY_SKIP,
    SRC_DIR,
    TESTS_DIR,
    RayTestCluster,
    process_gone,
)

ray = pytest.importorskip("ray", reason=RAY_SKIP)

import cluster_workloads as cw  # noqa: E402
import weft.exec  # noqa: E402
import workloads  # noqa: E402
from conftest import consume_in_thread, wait_until, weft_threads  # noqa: E402
from weft.errors import ConfigError, WorkerDied  # noqa: E402
from weft.exec._cluster import ClusterStatistics, ClusterTimeout  # noqa: E402

#: Generous bounds on waits for the cluster to reach a state; they hold on a loaded
#: machine and only decide how long a broken test takes to fail.
SETTLE_SECONDS = 60.0


def weft_actors_alive() -> list[dict[str, Any]]:
    table = ray._private.state.actors()
    return [a for a in table.values() if a["ActorClassName"].endswith("_CallHost") and a["State"] != "DEAD"]


def driver_refs() -> set[bytes]:
    return set(ray._private.worker.global_worker.core_worker.get_all_reference_counts())


def cpus_all_free() -> bool:
    return ray.available_resources().get("CPU", 0) == ray.cluster_resources().get("CPU", 0)


@pytest.fixture
def nothing_left(ray_cluster: RayTestCluster) -> Iterator[None]:
    """After the test: no weft actor alive, no object ref weft took, every CPU free."""
    refs_before = driver_refs()
    threads_before = weft_threads()
    yield
    assert wait_until(lambda: not weft_actors_alive(), SETTLE_SECONDS), f"actors left: {weft_actors_alive()}"
    assert wait_until(lambda: driver_refs() <= refs_before, SETTLE_SECONDS), \
        f"object refs left: {len(driver_refs() - refs_before)}"
    assert wait_until(cpus_all_free, SETTLE_SECONDS), f"CPUs still taken: {ray.available_resources()}"
    assert wait_until(lambda: not (weft_threads() - threads_before)), weft_threads() - threads_before


@pytest.fixture(scope="module")
def executor(ray_cluster: RayTestCluster) -> Iterator[weft.exec.Executor]:
    ex = weft.exec.create("ray", workers=2)
    yield ex
    ex.close()


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
    text = "".join(traceback.format_exception(info.value))
    assert "raise ValueError" in text  # the frame inside the function, from the worker


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(xs=st.lists(st.integers(-1000, 1000), max_size=30), ordered=st.booleans(), window=st.integers(1, 6))
def test_map_equals_serial(executor: weft.exec.Executor, xs: list[int], ordered: bool, window: int) -> None:
    got = list(executor.map_indexed(workloads.square, xs, ordered=ordered, max_in_flight=window))
    expected = [(i, x * x) for i, x in enumerate(xs)]
    assert (got if ordered else sorted(got)) == expected


def test_map_pulls_a_bounded_number_of_items(executor: weft.exec.Executor) -> None:
    pulled = 0

    def source() -> Iterator[int]:
        nonlocal pulled
        for i in range(1000):
            pulled += 1
            yield i

    results = executor.map(workloads.square, source(), max_in_flight=3)
    assert next(results) == 0
    assert pulled <= 4  # one consumed plus at most three started
    results.close()


def test_statistics_count_calls_per_node(executor: weft.exec.Executor) -> None:
    assert wait_until(lambda: executor.statistics().in_flight == 0, SETTLE_SECONDS)
    before = executor.statistics()
    assert list(executor.map(workloads.square, range(12))) == [x * x for x in range(12)]
    after = executor.statistics()
    assert isinstance(after, ClusterStatistics)
    assert after.backend == "ray" and after.completed - before.completed == 12
    done_per_node = {n: after.nodes[n] - before.nodes.get(n, 0) for n in after.nodes}
    assert sum(done_per_node.values()) == 12
    alive = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert set(after.nodes) <= alive
    assert after.busy_seconds >= before.busy_seconds and after.on_cluster == 0


def test_results_are_writable_arrays(executor: weft.exec.Executor) -> None:
    a = np.arange(300_000, dtype=np.float64)  # 2.4 MB: argument and result go through the object store
    [out] = list(executor.map(cw.doubled, [a]))
    assert out.flags.writeable and np.array_equal(out, a * 2)
    out += 1  # an ordinary array, like every other backend returns


# --------------------------------------------------------------------------- bounds
def _never_overlap(spans: list[tuple[float, float]]) -> bool:
    """Each call started after the one before ended (the system-wide monotonic clock)."""
    return all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans))


def test_calls_on_the_cluster_are_bounded_in_items(ray_cluster: RayTestCluster, nothing_left: None) -> None:
    with weft.exec.create("ray", workers=2, max_in_flight=1) as ex:
        results = list(ex.map(cw.timed_square, range(6), max_in_flight=6))
    assert [r[0] for r in results] == [x * x for x in range(6)]
    # one call at a time was handed over, in order: the next one started after the last ended
    assert _never_overlap([(r[1], r[2]) for r in results])


def test_calls_on_the_cluster_are_bounded_in_bytes(ray_cluster: RayTestCluster, nothing_left: None) -> None:
    arrays = [np.full(75_000, float(i)) for i in range(4)]  # 600 kB each, bound 1 MB: one at a time
    with weft.exec.create("ray", workers=2, max_in_flight_bytes=1_000_000) as ex:
        results = list(ex.map(cw.timed_sum, arrays, max_in_flight=4))
    assert [r[0] for r in results] == [75_000.0 * i for i in range(4)]
    assert _never_overlap([(r[1], r[2]) for r in results])


# --------------------------------------------------------------------------- what travels how
def test_callable_object_runs_on_actors_built_once_each(ray_cluster: RayTestCluster, tmp_path: Path,
                                                        nothing_left: None) -> None:
    cw.Model.pickled = 0
    model = cw.Model(str(tmp_path), offset=1)
    with weft.exec.create("ray", workers=2) as ex:
        results = list(ex.map(model, range(20)))
        assert ex.statistics().completed == 20
    assert [r[0] for r in results] == [x * x + 1 for x in range(20)]
    built_in = [b["pid"] for b in cw.markers(str(tmp_path), "built-").values()]
    assert 1 <= len(built_in) <= 2 and len(set(built_in)) == len(built_in)  # once per actor, not per call
    assert {r[1] for r in results} <= set(built_in)  # every call ran on an actor that built it
    assert cw.Model.pickled == 1  # put in the object store once, for every actor


def test_function_carrying_data_is_sent_once(ray_cluster: RayTestCluster, nothing_left: None) -> None:
    cw.Payload.pickled = 0
    fn = functools.partial(cw.payload_size, cw.Payload(200_000))
    with weft.exec.create("ray", workers=2) as ex:
        assert list(ex.map(fn, range(20))) == [200_000 + x for x in range(20)]
    assert cw.Payload.pickled == 1


# --------------------------------------------------------------------------- nothing left behind
def test_close_leaves_nothing(ray_cluster: RayTestCluster, tmp_path: Path, nothing_left: None) -> None:
    ex = weft.exec.create("ray", workers=2)
    assert list(ex.map(workloads.square, range(10))) == [x * x for x in range(10)]
    assert [r[0] for r in ex.map(cw.Model(str(tmp_path)), range(10))] == [x * x for x in range(10)]
    assert len(weft_actors_alive()) == 2
    ex.close()


def test_early_break_then_close_leaves_nothing(ray_cluster: RayTestCluster, tmp_path: Path,
                                               nothing_left: None) -> None:
    ex = weft.exec.create("ray", workers=2)
    results = ex.map(functools.partial(cw.zero_or_wait, str(tmp_path)), range(10), ordered=False)
    assert next(results) == 0
    assert wait_until(lambda: len(cw.markers(str(tmp_path), "started-")) >= 2, SETTLE_SECONDS)
    results.close()  # what `break` does: nobody waits for the blocked calls any more
    assert ex.statistics().in_flight == 0
    ex.close(timeout=0.5)  # they never finish: after the grace, their workers are killed


def test_exception_mid_map_leaves_nothing(ray_cluster: RayTestCluster, nothing_left: None) -> None:
    with weft.exec.create("ray", workers=2) as ex, pytest.raises(ValueError):
        list(ex.map(workloads.fail_on_three, range(40)))


def test_close_cancels_outstanding_calls(ray_cluster: RayTestCluster, tmp_path: Path,
                                         nothing_left: None) -> None:
    ex = weft.exec.create("ray", workers=2)
    futures = [ex.submit(cw.wait_for_release, str(tmp_path), x) for x in range(4)]
    assert wait_until(lambda: len(cw.markers(str(tmp_path), "started-")) == 2, SETTLE_SECONDS)
    ex.close(timeout=0.5)  # never released: two queued calls dropped, two running ones killed after 0.5 s
    assert all(f.cancelled() for f in futures)
    assert ex.statistics().cancelled == 4


# --------------------------------------------------------------------------- bounded waits
def test_timeout_when_no_node_has_the_resources(ray_cluster: RayTestCluster, nothing_left: None) -> None:
    with weft.exec.create("ray", workers=1, resources={"num_gpus": 1}, timeout=0.5) as ex:
        future = ex.submit(workloads.square, 3)
        with pytest.raises(ClusterTimeout, match=r"square\(3,\)") as info:
            future.result(timeout=SETTLE_SECONDS)
    assert "GPU 0 free of 0" in str(info.value) and "num_gpus=1" in str(info.value)
    assert isinstance(info.value, TimeoutError) and info.value.items == ("square(3,)",)


def test_timeout_when_a_call_hangs(ray_cluster: RayTestCluster, tmp_path: Path, nothing_left: None) -> None:
    with weft.exec.create("ray", workers=1, timeout=0.5) as ex:
        future = ex.submit(cw.wait_for_release, str(tmp_path), 7)
        with pytest.raises(ClusterTimeout, match=r"wait_for_release"):
            future.result(timeout=SETTLE_SECONDS)
        assert wait_until(cpus_all_free, SETTLE_SECONDS)  # the hung call was stopped, before close()
        assert ex.statistics().on_cluster == 0


# --------------------------------------------------------------------------- node failure
def _block_until_doomed_node_runs(directory: Path, node: Any) -> list[int]:
    """Wait until a call runs on ``node``; return the pids of the calls running there."""
    def on_node() -> list[int]:
        return [m["pid"] for m in cw.markers(str(directory), "started-").values() if m["node"] == node.node_id]

    assert wait_until(lambda: bool(on_node()), SETTLE_SECONDS), cw.markers(str(directory), "started-")
    return on_node()


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "ordered"), [("task", True), ("task", False), ("actor", False)])
def test_node_lost_mid_map_loses_nothing(ray_cluster: RayTestCluster, tmp_path: Path, kind: str,
                                         ordered: bool, nothing_left: None) -> None:
    node = ray_cluster.add_node()  # three one-CPU nodes: with three workers, one call runs on each
    fn: Any = (functools.partial(cw.wait_for_release, str(tmp_path)) if kind == "task"
               else cw.BlockingModel(str(tmp_path)))
    with weft.exec.create("ray", workers=3, max_retries=1) as ex:
        thread, out, errors = consume_in_thread(ex.map_indexed(fn, range(9), ordered=ordered))
        pids = _block_until_doomed_node_runs(tmp_path, node)
        ray_cluster.kill_node(node, pids)
        assert wait_until(lambda: all(process_gone(p) for p in pids), SETTLE_SECONDS)
        (tmp_path / "release").touch()
        thread.join(SETTLE_SECONDS)
        assert not thread.is_alive() and not errors, errors
        stats = ex.statistics()
    values = [(i, r if kind == "task" else r[0]) for i, r in out]
    expected = [(i, i * i) for i in range(9)]
    assert (values if ordered else sorted(values)) == expected  # every item exactly once
    assert stats.retried >= 1 and stats.completed == 9
    if kind == "actor":
        assert stats.worker_restarts >= 1


@pytest.mark.slow
def test_node_lost_after_max_retries_raises_worker_died(ray_cluster: RayTestCluster, tmp_path: Path,
                                                        nothing_left: None) -> None:
    node = ray_cluster.add_node()
    fn = functools.partial(cw.wait_for_release, str(tmp_path))
    with weft.exec.create("ray", workers=3, max_retries=0) as ex:
        thread, _out, errors = consume_in_thread(ex.map(fn, range(3)))
        pids = _block_until_doomed_node_runs(tmp_path, node)
        doomed = {int(name.split("-")[1]) for name, m in cw.markers(str(tmp_path), "started-").items()
                  if m["node"] == node.node_id}
        ray_cluster.kill_node(node, pids)
        assert wait_until(lambda: all(process_gone(p) for p in pids), SETTLE_SECONDS)
        (tmp_path / "release").touch()
        thread.join(SETTLE_SECONDS)
    assert not thread.is_alive() and len(errors) == 1
    error = errors[0]
    assert isinstance(error, WorkerDied), repr(error)
    [x] = doomed
    assert error.items == (f"wait_for_release({x},)",)
    assert any(f"item #{x}" in note for note in getattr(error, "__notes__", []))
    assert "max_retries" in str(error)


# --------------------------------------------------------------------------- connecting
_CONNECT_SCRIPT = r"""
import sys, ray, weft.exec, workloads
with weft.exec.create("ray", workers=1) as ex:
    assert ray.is_initialized()
    print(len([n for n in ray.nodes() if n["Alive"]]), list(ex.map(workloads.square, range(4))))
print(ray.is_initialized())
"""


def _run_script(env: dict[str, str]) -> str:
    env = {**env, "PYTHONPATH": os.pathsep.join([TESTS_DIR, SRC_DIR, env.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", _CONNECT_SCRIPT], capture_output=True, text=True,
                         env=env, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_connects_to_ray_address_and_disconnects_on_close(ray_cluster: RayTestCluster) -> None:
    stdout = _run_script({**os.environ, "RAY_ADDRESS": ray_cluster.address})
    assert stdout.split("\n")[:2] == ["3 [0, 1, 4, 9]", "False"]  # the session's three nodes


@pytest.mark.slow
def test_starts_a_local_ray_without_an_address() -> None:
    # Ray keeps a started instance's logs under RAY_TMPDIR: a short private one (its
    # socket paths must stay under 108 bytes), removed afterwards
    temp_dir = tempfile.mkdtemp(prefix="weft-ray-", dir="/tmp")
    try:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        stdout = _run_script({**env, "RAY_TMPDIR": temp_dir})
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert stdout.split("\n")[:2] == ["1 [0, 1, 4, 9]", "False"]  # its own one-node instance, shut down


@pytest.mark.parametrize(("options", "named"), [
    ({"workers": 0}, "workers"),
    ({"workers": 1, "max_retries": -1}, "max_retries"),
    ({"workers": 1, "timeout": 0}, "timeout"),
    ({"workers": 1, "resources": {"num_cpus": -1}}, "num_cpus"),
    ({"workers": 1, "resources": {"CPU": 1}}, "num_cpus"),
    ({"workers": 1, "resources": [1]}, "resources"),
    ({"workers": 1, "address": 5}, "address"),
])
def test_bad_options_name_the_value(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        weft.exec.create("ray", **options)


# --------------------------------------------------------------------------- weft doctor
def test_doctor_reports_the_cluster(ray_cluster: RayTestCluster) -> None:
    from weft.exec._cluster_info import probe_ray

    info = probe_ray(address=ray_cluster.address)
    assert info.reachable, info.note
    assert (info.nodes, info.cpus, info.gpus) == (3, 2, 0)
    assert info.memory_bytes > 0  # the object stores of the three nodes
    assert info.backend == "ray" and info.workers == 2
