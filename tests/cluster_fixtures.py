"""One local multi-node cluster per test session, for each engine.

conftest.py declares the session fixtures ``ray_cluster`` and ``dask_cluster`` on these,
so each cluster starts on first use, is shared by every test module of the session
(the exec tests, the pipeline tests, the resume test) and stops at its end.

``ray_test_cluster``: a Ray head (no CPU, so no call runs on it) and two worker nodes with
one CPU each, with short health checks so that a removed node is declared dead within
about a second. This process is connected to it for the session, so executors reuse
the connection. ``dask_test_cluster``: a Dask LocalCluster of two single-threaded worker
processes whose scheduler does not retry on its own (weft's ``max_retries`` decides).

Workers find ``cluster_workloads`` and weft through PYTHONPATH.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import weft

TESTS_DIR = str(Path(__file__).resolve().parent)
SRC_DIR = str(Path(weft.__file__).resolve().parents[1])
if weft.runtime.is_free_threaded_build():
    RAY_SKIP = "Ray publishes no wheels for free-threaded CPython (cp313t); install weft[ray] on a GIL build"
    DASK_SKIP = "Dask's distributed publishes no free-threaded (cp313t) support; install weft[dask] on a GIL build"
else:
    RAY_SKIP = "Ray is not installed for this interpreter: install weft[ray]"
    DASK_SKIP = "Dask's distributed is not installed for this interpreter: install weft[dask]"

#: Dead-node detection: a health check every 200 ms, three misses: ~0.6 s after a
#: node stops answering it is declared dead (Ray's defaults take 30 s or more).
HEALTH_CHECKS = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 200,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
}


@contextlib.contextmanager
def _worker_path() -> Iterator[None]:
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([TESTS_DIR, SRC_DIR] + ([saved] if saved else []))
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


@dataclass
class RayTestCluster:
    cluster: Any
    address: str
    worker_nodes: list[Any] = field(default_factory=list)

    def add_node(self) -> Any:
        """A third one-CPU worker node, for a test to remove."""
        with _worker_path():
            node = self.cluster.add_node(num_cpus=1)
        self.cluster.wait_for_nodes()
        return node

    def kill_node(self, node: Any, pids: list[int]) -> None:
        """Remove ``node`` abruptly and kill the worker processes (``pids``) it ran.

        ``remove_node(allow_graceful=False)`` kills the node's raylet and object store;
        its worker processes notice only later and may still answer their caller, which
        a machine that died could not do, so they are killed here too.
        """
        self.cluster.remove_node(node, allow_graceful=False)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie no parent reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


@contextlib.contextmanager
def ray_test_cluster() -> Iterator[RayTestCluster]:
    ray = pytest.importorskip("ray", reason=RAY_SKIP)
    from ray.cluster_utils import Cluster

    with _worker_path():
        cluster = Cluster(initialize_head=True,
                          head_node_args={"num_cpus": 0, "_system_config": HEALTH_CHECKS})
        nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    session_dir = cluster.head_node.get_session_dir_path()
    try:
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="WARNING")
        yield RayTestCluster(cluster, cluster.address, nodes)
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(session_dir, ignore_errors=True)
        latest = Path(session_dir).parent / "session_latest"
        if latest.is_symlink() and os.path.realpath(latest) == os.path.realpath(session_dir):
            latest.unlink()


@contextlib.contextmanager
def dask_test_cluster() -> Iterator[Any]:
    pytest.importorskip("distributed", reason=DASK_SKIP)
    import logging

    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                               scheduler_kwargs={"dashboard_address": ":0"},
                               silence_logs=logging.ERROR)
    try:
        yield cluster
    finally:
        cluster.close()
