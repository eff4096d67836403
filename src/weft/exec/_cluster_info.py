"""What ``weft doctor`` says about the Ray and Dask clusters this machine points at.

A cluster counts as pointed at when ``RAY_ADDRESS`` is set or a cluster was started on
this machine (``ray start --head`` leaves its address in Ray's temp directory), and
when ``DASK_SCHEDULER_ADDRESS`` is set. Each is asked for its nodes, CPUs, GPUs and
object-store (Dask: worker) memory by a short-lived subprocess, so the doctor itself
never imports an engine or keeps a connection, and a cluster that does not answer
costs at most ``timeout`` seconds. Only the standard library is imported here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from typing import Any

__all__ = ["ClusterInfo", "cluster_table", "probe_clusters", "probe_dask", "probe_ray"]

#: Bound on one probe: start Python, import the engine, connect, ask, disconnect.
PROBE_TIMEOUT_SECONDS = 30.0
#: Bound on the TCP check that skips the probe when nothing listens at the address.
CONNECT_CHECK_SECONDS = 2.0

_RAY_PROBE = r"""
import json, logging, sys
import ray
ray.init(address=sys.argv[1], logging_level=logging.ERROR, log_to_driver=False)
try:
    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    print(json.dumps({"nodes": len(nodes), "cpus": sum(r.get("CPU", 0) for r in nodes),
                      "gpus": sum(r.get("GPU", 0) for r in nodes),
                      "memory": int(sum(r.get("object_store_memory", 0) for r in nodes))}))
finally:
    ray.shutdown()
"""

_DASK_PROBE = r"""
import json, sys
from distributed import Client
with Client(sys.argv[1], timeout=sys.argv[2] + "s", set_as_default=False) as client:
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # before the n_workers argument existed, every worker was listed
        info = client.scheduler_info()
    workers = list(info.get("workers", {}).values())
    print(json.dumps({"nodes": len(workers), "cpus": sum(w.get("nthreads", 0) for w in workers),
                      "gpus": sum(w.get("resources", {}).get("GPU", 0) for w in workers),
                      "memory": int(sum(w.get("memory_limit", 0) or 0 for w in workers))}))
"""


@dataclass(frozen=True, kw_only=True)
class ClusterInfo:
    """One engine's cluster as seen from here; ``note`` says why it is not reachable.

    ``memory_bytes`` is Ray's object-store memory, or the Dask workers' memory limit.
    ``backend`` and ``workers`` are what weft would use on it: ``backend="ray"`` (or
    ``"dask"``) with one worker per CPU; ``backend="auto"`` never leaves this machine.
    """

    engine: str
    address: str | None
    reachable: bool
    nodes: int = 0
    cpus: float = 0.0
    gpus: float = 0.0
    memory_bytes: int = 0
    backend: str | None = None
    workers: int = 0
    note: str = ""


def _free_threaded() -> bool:
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def _not_installed(engine: str, module: str) -> ClusterInfo:
    note = f"{module} is not installed: pip install 'weft[{engine}]'"
    if _free_threaded():
        note += (f" ({module} publishes no wheels for free-threaded CPython builds: "
                 "drive the cluster from a GIL build)")
    return ClusterInfo(engine=engine, address=None, reachable=False, note=note)


def _ray_address_file() -> str:
    """Where ``ray start --head`` records its address (Ray's own rule for its temp dir)."""
    if "RAY_TMPDIR" in os.environ:
        base = os.environ["RAY_TMPDIR"]
    elif sys.platform.startswith("linux") and "TMPDIR" in os.environ:
        base = os.environ["TMPDIR"]
    else:
        base = "/tmp"
    return os.path.join(base, "ray", "ray_current_cluster")


def _local_ray_address() -> str | None:
    try:
        with open(_ray_address_file()) as f:
            return f.read().strip() or None
    except OSError:
        return None


def _nothing_listens(address: str) -> bool:
    """True when a plain ``host:port`` (optionally ``tcp://``) refuses a TCP connection."""
    hostport = address.removeprefix("tcp://")
    host, _, port = hostport.rpartition(":")
    if "://" in hostport or not host or not port.isdigit():
        return False  # ray://, tls://...: leave it to the engine
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_CHECK_SECONDS):
            return False
    except OSError:
        return True


def _probe(engine: str, script: str, address: str, timeout: float) -> ClusterInfo:
    if _nothing_listens(address):
        return ClusterInfo(engine=engine, address=address, reachable=False,
                           note=f"nothing answers at {address} (a cluster that stopped?)")
    try:
        out = subprocess.run([sys.executable, "-c", script, address, f"{timeout:g}"], capture_output=True,
                             text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return ClusterInfo(engine=engine, address=address, reachable=False,
                           note=f"no answer within {timeout:g} s")
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return ClusterInfo(engine=engine, address=address, reachable=False, note=f"cannot connect: {last}")
    data: dict[str, Any] = json.loads(lines[-1])
    cpus = float(data["cpus"])
    return ClusterInfo(engine=engine, address=address, reachable=True, nodes=int(data["nodes"]), cpus=cpus,
                       gpus=float(data["gpus"]), memory_bytes=int(data["memory"]), backend=engine,
                       workers=max(1, int(cpus)),
                       note=f"backend='{engine}' would use workers={max(1, int(cpus))} (one per CPU); "
                            "backend='auto' stays on this machine")


def probe_ray(address: str | None = None, *, timeout: float = PROBE_TIMEOUT_SECONDS) -> ClusterInfo:
    """The Ray cluster at ``address`` (default: ``RAY_ADDRESS``, else one started on this machine)."""
    if importlib.util.find_spec("ray") is None:
        return _not_installed("ray", "ray")
    address = address or os.environ.get("RAY_ADDRESS") or _local_ray_address()
    if not address:
        return ClusterInfo(engine="ray", address=None, reachable=False,
                           note="no cluster: set RAY_ADDRESS, or start one with `ray start --head`")
    return _probe("ray", _RAY_PROBE, address, timeout)


def probe_dask(address: str | None = None, *, timeout: float = PROBE_TIMEOUT_SECONDS) -> ClusterInfo:
    """The Dask scheduler at ``address`` (default: ``DASK_SCHEDULER_ADDRESS``)."""
    if importlib.util.find_spec("distributed") is None:
        return _not_installed("dask", "distributed")
    address = address or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if not address:
        return ClusterInfo(engine="dask", address=None, reachable=False,
                           note="no scheduler: set DASK_SCHEDULER_ADDRESS to use one")
    return _probe("dask", _DASK_PROBE, address, timeout)


def probe_clusters(*, timeout: float = PROBE_TIMEOUT_SECONDS) -> tuple[ClusterInfo, ...]:
    return (probe_ray(timeout=timeout), probe_dask(timeout=timeout))


def cluster_table(clusters: tuple[ClusterInfo, ...]) -> Any:
    """A rich Table of ``clusters`` for ``weft doctor``."""
    from rich.table import Table

    table = Table(title="clusters", show_header=True, header_style="bold")
    for column in ("engine", "address", "nodes", "CPUs", "GPUs", "memory", "what weft does"):
        table.add_column(column)
    for c in clusters:
        if c.reachable:
            memory = f"{c.memory_bytes / 2**30:.1f} GiB" + (" object store" if c.engine == "ray" else "")
            table.add_row(c.engine, c.address or "", str(c.nodes), f"{c.cpus:g}", f"{c.gpus:g}", memory, c.note)
        else:
            table.add_row(c.engine, c.address or "-", "-", "-", "-", "-", c.note)
    return table
