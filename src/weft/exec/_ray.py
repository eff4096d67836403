"""The ray backend: calls run on a Ray cluster, as tasks or on a pool of actors.

``weft.exec.create("ray", workers=N, address=..., resources=...)``:

- ``address=None`` connects to ``RAY_ADDRESS`` when it is set and otherwise starts a
  local Ray instance with ``workers`` CPUs; ``"auto"`` connects to the cluster started
  on this machine (``ray start --head``); ``"host:port"`` or ``"ray://host:port"``
  connects there. A process already connected (``ray.init`` called) keeps its
  connection, and weft never shuts down a connection it did not open.
- A plain function runs as a Ray task. A callable object whose class defines
  ``__call__`` (a model, a tokenizer: anything costly to build) runs on a pool of
  ``workers`` actors that each receive and build it once.
- A function that carries data (a ``functools.partial``, a closure, a callable
  object) is put in the object store once per executor, not pickled with every call;
  arguments larger than Ray's inline limit travel through the object store too.
  Results come back as ordinary writable arrays (copied out of the store).
- ``resources`` is what one call needs: ``num_cpus`` (default 1), ``num_gpus``,
  ``memory`` and any custom resource of the cluster.

Ray is imported only when an executor is created, so ``import weft`` stays light.
Ray publishes no wheels for free-threaded CPython: there, create() raises
:class:`~weft.errors.BackendUnavailable`.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from weft.errors import BackendUnavailable, ConfigError, RemoteError
from weft.exec._cluster import (
    DEFAULT_MAX_IN_FLIGHT_BYTES,
    DEFAULT_TIMEOUT_SECONDS,
    ClusterExecutor,
    Engine,
)
from weft.exec._cluster_call import Call, Reply, describe_call, is_callable_object, run_call

__all__ = ["RayExecutor"]

log = logging.getLogger(__name__)

#: Options of a Ray task or actor that ``resources`` may set directly; any other name
#: is a custom resource of the cluster.
_RAY_OPTIONS = ("num_cpus", "num_gpus", "memory")
#: Calls queued on one actor: the one it runs and the next, so it never waits for a
#: round trip to the driver between calls, while a slow actor holds no more.
_CALLS_PER_ACTOR = 2


# --------------------------------------------------------------------------- cluster side
def _run_task(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Reply:
    """The body of every weft Ray task."""
    import ray

    return run_call(fn, args, kwargs, ray.get_runtime_context().get_node_id())


class _CallHost:
    """The body of a weft actor: holds one callable object, built once, and calls it."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        import ray

        self._fn = fn
        self._node = ray.get_runtime_context().get_node_id()

    def call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Reply:
        return run_call(self._fn, args, kwargs, self._node)


# --------------------------------------------------------------------------- connection
class _Connection:
    """This process's connection to Ray, counted so weft shuts down only what it opened."""

    lock = threading.Lock()
    users = 0  # open executors on a connection weft opened


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise BackendUnavailable(
            f"backend 'ray' needs Ray ({exc}): pip install 'weft[ray]'. Ray publishes no wheels for "
            "free-threaded CPython builds: drive a Ray cluster from a GIL build") from exc
    return ray


def _connect(ray: Any, address: str | None, workers: int) -> bool:
    """Connect this process to Ray; True when weft opened the connection (and must close it)."""
    with _Connection.lock:
        if ray.is_initialized():
            if _Connection.users:
                _Connection.users += 1
                return True
            log.info("weft: using this process's existing Ray connection")
            return False
        target = address or os.environ.get("RAY_ADDRESS") or "local"
        options: dict[str, Any] = {"address": target, "logging_level": logging.WARNING}
        if target == "local":
            options.update(num_cpus=workers, include_dashboard=False)
        try:
            ray.init(**options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise BackendUnavailable(
                f"cannot connect to the Ray cluster at {target!r} ({type(exc).__name__}: {exc}). Start one "
                "with `ray start --head`, fix RAY_ADDRESS or address=, or pass address=None to start a "
                "local one") from exc
        _Connection.users = 1
        return True


def _disconnect(ray: Any) -> None:
    with _Connection.lock:
        _Connection.users -= 1
        if _Connection.users == 0:
            ray.shutdown()


# --------------------------------------------------------------------------- engine
@dataclass(eq=False)
class _Actor:
    handle: Any
    ready: Any  # the future of its __ray_ready__ call, kept until it resolves
    calls: collections.deque[Call] = field(default_factory=collections.deque)  # in submission order
    up: bool = False
    dead: bool = False


@dataclass(eq=False)
class _Pool:
    """The actors that host one callable object."""

    fn: Callable[..., Any]
    ref: Any  # the callable in the object store, sent to each actor once
    actors: list[_Actor] = field(default_factory=list)
    retiring: bool = False
    failed_starts: int = 0  # actors that died before they were up, since the last one came up
    last_error: BaseException | None = None


@dataclass(eq=False)
class _Handle:
    ref: Any
    future: Future[Any] | None
    actor: _Actor | None = None


class _RayEngine(Engine):
    def __init__(self, notify: Callable[[Call, Any], None], wake: Callable[[], None], *, ray: Any,
                 workers: int, options: dict[str, Any], owns_connection: bool) -> None:
        super().__init__(notify, wake)
        self.ray = ray
        self.workers = workers
        self.options = options
        self.owns_connection = owns_connection
        self.task = ray.remote(_run_task).options(max_retries=0, retry_exceptions=False, **options)
        self.host = ray.remote(_CallHost).options(max_restarts=0, max_task_retries=0, max_concurrency=1,
                                                  scheduling_strategy="SPREAD", **options)
        self.pools: dict[int, _Pool] = {}
        self.replaced = 0
        self.closed = False
        lost = ray.exceptions
        self.lost_errors: tuple[type[BaseException], ...] = (
            lost.WorkerCrashedError, lost.NodeDiedError, lost.LocalRayletDiedError, lost.ObjectLostError,
            lost.RayActorError, lost.OutOfMemoryError)

    # -- starting calls ---------------------------------------------------------------
    def start(self, call: Call) -> _Handle | None:
        if is_callable_object(call.fn):
            actor = self._actor_for(call.fn)
            if actor is None:
                return None
            ref = actor.handle.call.remote(call.args, call.kwargs)
            actor.calls.append(call)
            handle = _Handle(ref, ref.future(), actor)
        else:
            ref = self.task.remote(self.shared_function(call.fn), call.args, call.kwargs)
            handle = _Handle(ref, ref.future())
        future = handle.future
        assert future is not None
        future.add_done_callback(lambda _f: self.notify(call, handle))
        return handle

    def share(self, fn: Callable[..., Any]) -> Any:
        return self.ray.put(fn)

    def _actor_for(self, fn: Callable[..., Any]) -> _Actor | None:
        """The least busy actor that is up and has room, or None (``wake()`` follows)."""
        pool = self.pools.get(id(fn))
        if pool is None or pool.fn is not fn:
            for old in self.pools.values():  # one callable at a time holds the cluster's CPUs
                old.retiring = True
            self._retire_idle()
            pool = _Pool(fn, self.ray.put(fn))
            self.pools[id(fn)] = pool
        pool.actors = [a for a in pool.actors if not a.dead]
        if pool.failed_starts >= self.workers:
            raise RemoteError(
                f"{pool.failed_starts} actors in a row failed to start with {describe_call(fn, ())[:-2]}: "
                f"{pool.last_error}. Check that it unpickles on the cluster's nodes (its module "
                "installed there) and that the nodes have the resources asked for")
        while len(pool.actors) < self.workers:
            pool.actors.append(self._start_actor(pool))
        candidates = [a for a in pool.actors if a.up and len(a.calls) < _CALLS_PER_ACTOR]
        return min(candidates, key=lambda a: len(a.calls)) if candidates else None

    def _start_actor(self, pool: _Pool) -> _Actor:
        handle = self.host.remote(pool.ref)
        actor = _Actor(handle, handle.__ray_ready__.remote().future())

        def on_ready(future: Future[Any]) -> None:
            # runs in a Ray thread: only flags and a wake-up here, the dispatcher does the rest
            error = future.exception()
            if error is None:
                actor.up = True
                pool.failed_starts = 0
            elif not actor.dead:
                actor.dead = True
                pool.failed_starts += 1
                pool.last_error = error
            actor.ready = None
            self.wake()

        actor.ready.add_done_callback(on_ready)
        return actor

    def _retire_idle(self) -> None:
        for key, pool in list(self.pools.items()):
            if pool.retiring and all(not a.calls for a in pool.actors):
                for actor in pool.actors:
                    self._kill(actor)
                del self.pools[key]

    def _kill(self, actor: _Actor) -> None:
        actor.dead = True
        try:
            self.ray.kill(actor.handle, no_restart=True)
        except Exception:  # already dead, or the cluster is gone
            log.debug("weft: could not kill a Ray actor", exc_info=True)

    # -- answers ---------------------------------------------------------------------
    def answer(self, handle: _Handle) -> Reply:
        assert handle.future is not None
        reply: Reply = handle.future.result(timeout=0)
        return reply

    def is_lost(self, exc: BaseException) -> bool:
        return isinstance(exc, self.lost_errors)

    def casualties(self, call: Call) -> list[tuple[Call, bool]]:
        handle: _Handle = call.handle
        actor = handle.actor
        if actor is None:
            return [(call, True)]
        if not actor.dead:  # the first answer from a dead actor: a replacement is started lazily
            self._kill(actor)
            self.replaced += 1
        calls = list(actor.calls)  # the oldest was running; the others waited behind it
        return [(c, i == 0) for i, c in enumerate(calls)] or [(call, True)]

    def forget(self, call: Call) -> None:
        handle: _Handle | None = call.handle
        if handle is None:
            return
        # The handle and its future's done-callback refer to each other: break the cycle
        # so the object ref goes now, not at the next garbage collection.
        handle.ref = handle.future = None
        if handle.actor is not None:
            try:
                handle.actor.calls.remove(call)
            except ValueError:
                pass
            self._retire_idle()

    def cancel(self, handle: _Handle, *, force: bool) -> None:
        if not force:
            # A call nobody waits for any more runs to its end and its answer is dropped:
            # ray.cancel() of a task whose answer is on its way crashes the driver on a Ray
            # check ("Tried to complete task that was not pending", ray-project/ray#54846),
            # and at most max_in_flight calls are out.
            return
        if handle.actor is None:
            # Only calls stuck for a whole grace period or timeout get here: their answer
            # is not on its way, and the worker that runs them is killed.
            self.ray.cancel(handle.ref, force=True, recursive=True)
        elif not handle.actor.dead:
            # A running actor call cannot be interrupted: the actor goes, and a fresh one
            # takes its place for the next call.
            self._kill(handle.actor)
            self.replaced += 1

    # -- state and shutdown ------------------------------------------------------------
    def describe(self) -> str:
        try:
            total = self.ray.cluster_resources()
            free = self.ray.available_resources()
        except Exception as exc:
            return f"The cluster did not answer ({type(exc).__name__}: {exc})."
        names = sorted({"CPU", "GPU"} | {k for k in total if not k.startswith(("node:", "accelerator_type"))}
                       - {"memory", "object_store_memory"})
        have = ", ".join(f"{k} {free.get(k, 0):g} free of {total.get(k, 0):g}" for k in names)
        asked = ", ".join(f"{k}={v:g}" for k, v in self.options.items() if k != "resources")
        custom = self.options.get("resources") or {}
        asked += "".join(f", {k}={v:g}" for k, v in custom.items())
        return f"The cluster has {have}; each call asks {asked}."

    def restarts(self) -> int:
        return self.replaced

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            for pool in self.pools.values():
                for actor in pool.actors:
                    if not actor.dead:
                        self._kill(actor)
        finally:
            self.pools.clear()
            self.shared.clear()
            if self.owns_connection:
                _disconnect(self.ray)


def _ray_options(resources: Mapping[str, float] | None) -> dict[str, Any]:
    if resources is None:
        resources = {"num_cpus": 1}
    if not isinstance(resources, Mapping):
        raise ConfigError(f"resources must be a mapping such as {{'num_cpus': 1, 'num_gpus': 0}}, got {resources!r}")
    options: dict[str, Any] = {"num_cpus": 1}
    custom: dict[str, float] = {}
    for name, amount in resources.items():
        if (not isinstance(name, str) or isinstance(amount, bool) or not isinstance(amount, int | float)
                or not amount >= 0):
            raise ConfigError(f"resources[{name!r}] must be a number >= 0, got {amount!r}")
        if name in ("CPU", "GPU"):
            raise ConfigError(f"resources: write {'num_cpus' if name == 'CPU' else 'num_gpus'}=..., not {name!r}")
        if name in _RAY_OPTIONS:
            options[name] = amount
        else:
            custom[name] = amount
    if custom:
        options["resources"] = custom
    return options


class RayExecutor(ClusterExecutor):
    """Runs calls on a Ray cluster; see the module docstring for what goes where.

    ``max_retries`` re-runs a call whose node or worker was lost (then
    :class:`~weft.errors.WorkerDied`); ``timeout`` bounds every wait on the cluster:
    when no call finishes for that many seconds while calls are out, they fail with
    :class:`~weft.exec._cluster.ClusterTimeout`. ``max_in_flight`` (default
    ``2 * workers``) and ``max_in_flight_bytes`` bound the calls on the cluster at once.
    """

    backend = "ray"
    #: Work per call a pipeline's map stage aims for. A Ray task measured ~2.3 ms of wall
    #: time per call on 2 cores (1 or 100 trivial items per call alike, 2 workers), so
    #: 50 ms chunks keep that cost near 5 %.
    target_chunk_seconds = 0.05

    def __init__(self, *, workers: int, address: str | None = None,
                 resources: Mapping[str, float] | None = None, reason: str = "", max_retries: int = 1,
                 timeout: float = DEFAULT_TIMEOUT_SECONDS, max_in_flight: int | None = None,
                 max_in_flight_bytes: int = DEFAULT_MAX_IN_FLIGHT_BYTES) -> None:
        super().__init__(workers=workers, reason=reason, max_retries=max_retries, timeout=timeout,
                         max_in_flight=max_in_flight, max_in_flight_bytes=max_in_flight_bytes)
        if address is not None and (not isinstance(address, str) or not address):
            raise ConfigError(f"address must be None, 'auto', 'host:port' or 'ray://host:port', got {address!r}")
        options = _ray_options(resources)
        ray = _import_ray()
        owns = _connect(ray, address, workers)
        try:
            self._engine = _RayEngine(self._notify, self._wake, ray=ray, workers=workers, options=options,
                                      owns_connection=owns)
        except BaseException:
            if owns:
                _disconnect(ray)
            raise
        self.address = address
        self.resources = dict(resources) if resources is not None else {"num_cpus": 1}
        self._warn_if_infeasible(ray, options)

    @staticmethod
    def _warn_if_infeasible(ray: Any, options: dict[str, Any]) -> None:
        try:
            total = ray.cluster_resources()
        except Exception:
            return
        wanted = {"CPU": options.get("num_cpus", 0), "GPU": options.get("num_gpus", 0),
                  **options.get("resources", {})}
        missing = {k: v for k, v in wanted.items() if v > total.get(k, 0)}
        if missing:
            log.warning("weft: each call asks for %s but the Ray cluster has %s in all: calls wait until "
                        "nodes with them join, and fail after timeout", missing,
                        {k: total.get(k, 0) for k in missing})
