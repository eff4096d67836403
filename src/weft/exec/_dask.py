"""The dask backend: calls run on a Dask ``distributed`` cluster.

``weft.exec.create("dask", workers=N, address=...)``:

- ``address=None`` connects to the scheduler named by Dask's configuration
  (``DASK_SCHEDULER_ADDRESS``) when set, and otherwise starts a ``LocalCluster`` of
  ``workers`` single-threaded worker processes, closed with the executor;
  ``"tcp://host:port"`` connects to a running scheduler (dask-jobqueue on SLURM, a
  ``dask scheduler`` you started, ...).
- A function that carries data (a ``functools.partial``, a closure, a callable
  object) is scattered (broadcast) to the cluster once per executor: each worker
  receives and unpickles it once and keeps it for every call. Arguments of at least
  :data:`SCATTER_MIN_BYTES` are scattered to a worker directly instead of travelling
  inside the task through the scheduler.

A worker that dies while it runs a call makes the scheduler report it lost; weft
re-runs the call up to ``max_retries`` times, then raises
:class:`~weft.errors.WorkerDied`. The scheduler weft starts does not retry on its own
(``allowed-failures`` 0) so ``max_retries`` alone decides; a scheduler you run retries
first, by its own ``distributed.scheduler.allowed-failures``.

``distributed`` is imported only when an executor is created.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from weft.errors import BackendUnavailable, ConfigError
from weft.exec._cluster import (
    DEFAULT_MAX_IN_FLIGHT_BYTES,
    DEFAULT_TIMEOUT_SECONDS,
    ClusterExecutor,
    Engine,
)
from weft.exec._cluster_call import Call, Reply, run_call

__all__ = ["DaskExecutor", "SCATTER_MIN_BYTES"]

log = logging.getLogger(__name__)

#: Arguments at least this large are scattered to a worker instead of sent inside the
#: task. Measured here (2 cores, LocalCluster of 2 processes): for 1 MiB a task costs
#: 22 ms sent inline and 29 ms scattered (scatter is one more round trip); for 8 MiB
#: 45 ms inline and 41 ms scattered (inline, the bytes pass through the scheduler);
#: the two cross between 2 and 4 MiB. Dask also warns about graphs above 10 MiB.
SCATTER_MIN_BYTES = 4 * 1024 * 1024
#: The scheduler always serves HTTP (health, metrics) on port 8787 unless told otherwise,
#: and warns when that port is taken (by another cluster): a free port instead.
_NO_FIXED_PORT = {"dashboard_address": ":0"}


# --------------------------------------------------------------------------- cluster side
def _run_task(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Reply:
    """The body of every weft Dask task."""
    from distributed import get_worker

    return run_call(fn, args, kwargs, get_worker().address)


def _run_scattered(fn: Callable[..., Any], bundle: tuple[tuple[Any, ...], dict[str, Any]]) -> Reply:
    """A task whose arguments were scattered (``bundle`` arrives as ``(args, kwargs)``)."""
    return _run_task(fn, bundle[0], bundle[1])


# --------------------------------------------------------------------------- engine
def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise BackendUnavailable(
            f"backend 'dask' needs Dask's distributed scheduler ({exc}): pip install 'weft[dask]'. "
            "It publishes no support for free-threaded CPython builds yet: use a GIL build") from exc
    return distributed


@dataclass(eq=False)
class _Handle:
    future: Any  # distributed.Future of the task
    scattered: Any = None  # the scattered arguments, released with the handle


class _DaskEngine(Engine):
    def __init__(self, notify: Callable[[Call, Any], None], wake: Callable[[], None], *, distributed: Any,
                 client: Any, cluster: Any, timeout: float) -> None:
        super().__init__(notify, wake)
        self.client = client
        self.cluster = cluster  # the LocalCluster weft started, or None
        self.timeout = timeout
        self.killed_worker: type[BaseException] = distributed.scheduler.KilledWorker
        self.prefix = f"weft-{uuid.uuid4().hex[:12]}"
        self.ids = itertools.count()

    def start(self, call: Call) -> _Handle:
        fn = self.shared_function(call.fn)
        key = f"{self.prefix}-{next(self.ids)}"
        if call.nbytes >= SCATTER_MIN_BYTES:
            [bundle] = self.client.scatter([(call.args, call.kwargs)], hash=False)
            handle = _Handle(self.client.submit(_run_scattered, fn, bundle, key=key, pure=False), bundle)
        else:
            handle = _Handle(self.client.submit(_run_task, fn, call.args, call.kwargs, key=key, pure=False))
        handle.future.add_done_callback(lambda _f: self.notify(call, handle))
        return handle

    def share(self, fn: Callable[..., Any]) -> Any:
        # on every worker: a task whose function sits on one worker is placed there
        # (data locality), and calls would queue on it while the others idle
        [future] = self.client.scatter([fn], hash=False, broadcast=True)
        return future

    def forget(self, call: Call) -> None:
        handle: _Handle | None = call.handle
        if handle is not None:  # break the handle <-> done-callback cycle: the keys go at once
            handle.future = handle.scattered = None

    def answer(self, handle: _Handle) -> Reply:
        reply: Reply = handle.future.result(timeout=self.timeout)
        return reply

    def is_lost(self, exc: BaseException) -> bool:
        return isinstance(exc, self.killed_worker)

    def cancel(self, handle: _Handle, *, force: bool) -> None:
        # A call already running in a worker thread cannot be interrupted: Dask drops
        # its result. close() of a cluster weft started stops the worker processes.
        handle.future.cancel()

    def describe(self) -> str:
        try:
            info = self.client.scheduler_info()
        except Exception as exc:
            return f"The scheduler did not answer ({type(exc).__name__}: {exc})."
        workers = info.get("workers", {})
        threads = sum(w.get("nthreads", 0) for w in workers.values())
        return f"The scheduler at {info.get('address', '?')} has {len(workers)} workers with {threads} threads."

    def close(self) -> None:
        self.shared.clear()
        try:
            self.client.close(timeout=self.timeout)
        finally:
            if self.cluster is not None:
                self.cluster.close(timeout=self.timeout)


class DaskExecutor(ClusterExecutor):
    """Runs calls on a Dask cluster; see the module docstring for what goes where.

    ``max_retries``, ``timeout``, ``max_in_flight`` and ``max_in_flight_bytes`` mean what
    they mean for the ray backend: retries after a lost worker, the bound on every wait
    on the cluster, and the calls and argument bytes on the cluster at once.
    """

    backend = "dask"
    #: Work per call a pipeline's map stage aims for. A Dask task measured ~8.4 ms of wall
    #: time per call on 2 cores (LocalCluster of 2 single-threaded workers, 1 or 100
    #: trivial items per call alike), so 200 ms chunks keep that cost near 4 %.
    target_chunk_seconds = 0.2

    def __init__(self, *, workers: int, address: str | None = None, reason: str = "", max_retries: int = 1,
                 timeout: float = DEFAULT_TIMEOUT_SECONDS, max_in_flight: int | None = None,
                 max_in_flight_bytes: int = DEFAULT_MAX_IN_FLIGHT_BYTES) -> None:
        super().__init__(workers=workers, reason=reason, max_retries=max_retries, timeout=timeout,
                         max_in_flight=max_in_flight, max_in_flight_bytes=max_in_flight_bytes)
        if address is not None and (not isinstance(address, str) or not address):
            raise ConfigError(f"address must be None or a scheduler address such as 'tcp://host:8786', "
                              f"got {address!r}")
        distributed = _import_distributed()
        import dask

        target = address or dask.config.get("scheduler-address", None)
        cluster: Any = None
        try:
            if target is None:
                with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                       dashboard_address=None,
                                                       scheduler_kwargs=_NO_FIXED_PORT, silence_logs=logging.WARNING)
                client = distributed.Client(cluster, set_as_default=False, timeout=f"{self.timeout}s")
            else:
                client = distributed.Client(target, set_as_default=False, timeout=f"{self.timeout}s")
        except (OSError, TimeoutError, ValueError) as exc:
            if cluster is not None:
                cluster.close()
            raise BackendUnavailable(
                f"cannot connect to the Dask scheduler at {target!r} ({type(exc).__name__}: {exc}); start it, "
                "fix address= or DASK_SCHEDULER_ADDRESS, or pass address=None for a local cluster") from exc
        self.address = target if target is not None else cluster.scheduler_address
        self._engine = _DaskEngine(self._notify, self._wake, distributed=distributed, client=client, cluster=cluster,
                                   timeout=self.timeout)
