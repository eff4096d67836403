"""Pipelines whose map stage runs on a cluster (Ray, Dask): the same results, resume,
error policies, statistics and failure story as a local map.

The clusters are the session's (``ray_cluster``: a head and two one-CPU worker nodes;
``dask_cluster``: two single-threaded workers); tests that need one skip where its
engine is not installed (free-threaded builds).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cluster_workloads as cw
import data_workloads as w
import weft.data as wd
from cluster_fixtures import process_gone
from conftest import consume_in_thread, wait_until
from weft.data._stats import StageStatistics, verdict
from weft.errors import ConfigError, WorkerDied

#: Bounds on waits for the cluster to reach a state: generous, they only decide how long
#: a broken test takes to fail.
SETTLE_SECONDS = 60.0


def ray_idle() -> bool:
    """Every CPU of the cluster free and no weft actor alive: nothing left behind."""
    import ray

    actors = [a for a in ray._private.state.actors().values()
              if a["ActorClassName"].endswith("_CallHost") and a["State"] != "DEAD"]
    return not actors and ray.available_resources().get("CPU", 0) == ray.cluster_resources().get("CPU", 0)


@pytest.fixture
def on_ray(ray_cluster: Any) -> Iterator[Any]:
    yield ray_cluster
    assert wait_until(ray_idle, SETTLE_SECONDS), "the pipeline left work or actors on the cluster"


def dask_options(cluster: Any) -> dict[str, Any]:
    return {"address": cluster.scheduler_address}


def serial(pipe_of: Any) -> list[Any]:
    return list(pipe_of("serial", {}))


# --------------------------------------------------------------------------- same results
def _random_pipe(xs: list[int], batch: int, ordered: bool) -> Any:
    def make(backend: str, options: dict[str, Any]) -> wd.Pipeline:
        pipe = wd.from_iterable(xs).map(w.double, workers=0 if backend == "serial" else 2, backend=backend,
                                        ordered=ordered, backend_options=options or None)
        return pipe.filter(w.not_div3).batch(batch) if batch else pipe.filter(w.not_div3)
    return make


def _flat(items: list[Any]) -> list[int]:
    out: list[int] = []
    for x in items:
        out.extend(int(v) for v in x) if hasattr(x, "__len__") else out.append(int(x))
    return out


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(xs=st.lists(st.integers(-500, 500), max_size=60), batch=st.integers(0, 5), ordered=st.booleans())
def test_ray_pipeline_equals_serial(on_ray: Any, xs: list[int], batch: int, ordered: bool) -> None:
    make = _random_pipe(xs, batch, ordered)
    got = list(make("ray", {}))
    expected = serial(make)
    if ordered:
        assert _flat(got) == _flat(expected)
    else:
        assert sorted(_flat(got)) == sorted(_flat(expected))


@settings(max_examples=4, deadline=None)
@given(xs=st.lists(st.integers(-500, 500), max_size=60), batch=st.integers(0, 5), ordered=st.booleans())
def test_dask_pipeline_equals_serial(dask_cluster: Any, xs: list[int], batch: int, ordered: bool) -> None:
    make = _random_pipe(xs, batch, ordered)
    got = list(make("dask", dask_options(dask_cluster)))
    expected = serial(make)
    assert (_flat(got) if ordered else sorted(_flat(got))) == (_flat(expected) if ordered else
                                                                 sorted(_flat(expected)))


def test_chunks_are_sized_for_the_cluster(on_ray: Any) -> None:
    pipe = wd.from_range(3000).map(w.inc, workers=2, backend="ray", resources={"num_cpus": 1})
    assert list(pipe) == list(range(1, 3001))
    [_, stage] = pipe.statistics().stages
    assert stage.backend == "ray" and stage.workers == 2
    # a call of ~1 us: chunks grow past a local process map's cap (64 items for two workers)
    # towards the cluster's 50 ms of work per call, capped by its in-flight bound
    assert stage.extra["chunk"] > 64
    assert 1 <= stage.extra["nodes"] <= 2


# --------------------------------------------------------------------------- resume
@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("stops", [[7], [3, 25]])
def test_dask_pipeline_resumes_exactly(dask_cluster: Any, ordered: bool, stops: list[int]) -> None:
    def make() -> wd.Pipeline:
        return wd.from_range(40).map(w.jitter, workers=2, backend="dask", ordered=ordered,
                                     backend_options=dask_options(dask_cluster))
    seen: list[int] = []
    state = None
    for stop in stops:
        pipe = make()
        if state is not None:
            pipe.load_state_dict(state)
        it = iter(pipe)
        seen.extend(next(it) for _ in range(stop))
        state = pipe.state_dict()
        pipe.close()
    pipe = make()
    pipe.load_state_dict(state)
    seen.extend(pipe)
    assert (seen if ordered else sorted(seen)) == list(range(40))


# --------------------------------------------------------------------------- error policies
def test_error_policies_on_the_cluster(on_ray: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="seven") as info:
        list(wd.from_range(12).map(w.fail_on_7, workers=2, backend="ray"))
    assert any("source index 7" in note for note in getattr(info.value, "__notes__", []))

    skipping = wd.from_range(12).map(w.fail_on_7, workers=2, backend="ray", on_error="skip")
    assert list(skipping) == [x for x in range(12) if x != 7]
    assert skipping.statistics().stages[1].skipped == 1

    retrying = wd.from_iterable([(str(tmp_path), x) for x in range(6)]).map(
        w.flaky, workers=2, backend="ray", on_error="retry", retries=2)
    assert list(retrying) == list(range(6))
    assert retrying.statistics().stages[1].retried == 12  # two failures per item, on the cluster


def test_options_are_checked_when_the_stage_is_built() -> None:
    with pytest.raises(ConfigError, match="num_gpus"):
        wd.from_range(4).map(w.inc, backend="thread", resources={"num_gpus": 1})
    with pytest.raises(ConfigError, match="workers"):
        wd.from_range(4).map(w.inc, backend="ray", backend_options={"workers": 3})
    with pytest.raises(ConfigError, match="address"):
        wd.from_range(4).map(w.inc, backend="auto", backend_options={"address": "auto"})


def test_resources_no_node_has_fail_naming_the_items(on_ray: Any) -> None:
    pipe = wd.from_range(3).map(w.inc, workers=1, backend="ray", resources={"num_gpus": 1},
                                backend_options={"timeout": 0.5})
    from weft.exec._cluster import ClusterTimeout

    with pytest.raises(ClusterTimeout, match="num_gpus=1") as info:
        list(pipe)  # never a hang: the wait for a GPU is bounded by timeout
    assert any("source indices [0]" in note for note in getattr(info.value, "__notes__", []))


# --------------------------------------------------------------------------- statistics and verdict
def _stage(index: int, kind: str, *, busy: float = 0.0, up: float = 0.0, down: float = 0.0,
           backend: str = "ray", nodes: float | None = 2.0) -> StageStatistics:
    return StageStatistics(index=index, name=f"s{index}", kind=kind, items=100, items_per_second=10.0,
                           busy_fraction=busy, wait_upstream_seconds=up, wait_downstream_seconds=down,
                           elapsed_seconds=10.0, backend=backend, workers=4,
                           extra={} if nodes is None else {"nodes": nodes, "chunk": 8.0})


def test_verdict_says_when_the_cluster_is_the_bottleneck() -> None:
    stages = (_stage(0, "source", nodes=None, backend="inline"), _stage(1, "map", busy=0.95))
    text = verdict(stages, consumer_wait_fraction=0.6, gil=True, cores=2)
    assert text.startswith("the cluster is the bottleneck") and "4 workers busy 95%" in text
    assert "2 node(s)" in text and "add nodes" in text


def test_verdict_says_when_the_driver_is_the_bottleneck() -> None:
    waited = (_stage(0, "source", nodes=None, backend="inline"), _stage(1, "map", busy=0.2, down=6.0))
    text = verdict(waited, consumer_wait_fraction=0.7, gil=True, cores=2)
    assert text.startswith("the driver is the bottleneck") and "busy only 20%" in text and "60%" in text
    slow_source = (_stage(0, "source", nodes=None, backend="inline"), _stage(1, "map", busy=0.1, up=8.0))
    text = verdict(slow_source, consumer_wait_fraction=0.7, gil=True, cores=2)
    assert text.startswith("the driver is the bottleneck") and "`s0` on the driver" in text


def test_statistics_of_a_cluster_map(on_ray: Any) -> None:
    pipe = wd.from_range(200).map(w.inc, workers=2, backend="ray").batch(10)
    assert len(list(pipe)) == 20
    s = pipe.statistics()
    stage = s.stages[1]
    assert stage.backend == "ray" and stage.items == 200 and "requested" in stage.reason
    assert stage.extra["nodes"] >= 1 and 0.0 <= stage.busy_fraction <= 1.0
    assert s.verdict  # a sentence, whichever stage it names


# --------------------------------------------------------------------------- node failure
def _kill_a_busy_node(cluster: Any, directory: Path, node: Any) -> set[int]:
    """Wait until a call runs on ``node``, then remove it; the items it was running."""
    def on_node() -> dict[str, dict[str, Any]]:
        return {n: m for n, m in cw.markers(str(directory), "started-").items() if m["node"] == node.node_id}

    assert wait_until(lambda: bool(on_node()), SETTLE_SECONDS), cw.markers(str(directory), "started-")
    running = on_node()
    pids = [m["pid"] for m in running.values()]
    cluster.kill_node(node, pids)
    assert wait_until(lambda: all(process_gone(p) for p in pids), SETTLE_SECONDS)
    return {int(name.split("-")[1]) for name in running}


@pytest.mark.slow
@pytest.mark.parametrize("ordered", [True, False])
def test_node_lost_mid_epoch_loses_and_repeats_nothing(on_ray: Any, tmp_path: Path, ordered: bool) -> None:
    node = on_ray.add_node()  # three one-CPU nodes and three workers: a chunk runs on each
    pipe = wd.from_range(9).map(functools.partial(cw.wait_for_release, str(tmp_path)), workers=3,
                                backend="ray", ordered=ordered, backend_options={"max_retries": 1})
    thread, out, errors = consume_in_thread(pipe)
    _kill_a_busy_node(on_ray, tmp_path, node)
    (tmp_path / "release").touch()
    thread.join(SETTLE_SECONDS)
    assert not thread.is_alive() and not errors, errors
    assert (out if ordered else sorted(out)) == [x * x for x in range(9)]  # every item exactly once
    assert pipe.statistics().stages[1].items == 9


@pytest.mark.slow
def test_node_lost_after_max_retries_raises_worker_died_naming_the_items(on_ray: Any, tmp_path: Path) -> None:
    node = on_ray.add_node()
    pipe = wd.from_range(3).map(functools.partial(cw.wait_for_release, str(tmp_path)), workers=3,
                                backend="ray", backend_options={"max_retries": 0})
    thread, _out, errors = consume_in_thread(pipe)
    lost = _kill_a_busy_node(on_ray, tmp_path, node)
    (tmp_path / "release").touch()
    thread.join(SETTLE_SECONDS)
    assert not thread.is_alive() and len(errors) == 1
    [error] = errors
    assert isinstance(error, WorkerDied), repr(error)
    assert set(error.items) == lost and len(lost) == 1  # the source index of the lost item
    assert "source indices" in str(error) and "max_retries" in str(error)
