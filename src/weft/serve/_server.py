"""The server's lifecycle: load models on workers, serve HTTP, drain on a signal.

``Server.run()`` serves in the foreground (the CLI): SIGTERM or SIGINT makes it report
not-ready, refuse new inference with 503, finish every request in flight, then exit.
Requests still in flight after ``drain_timeout``, or at a second SIGINT, are answered
503 "server shutting down" (counted in ``statistics().cut``) and the server exits. ``Server.start()`` /
``close()`` (or ``with Server(...)``) and :func:`serve_in_thread` run it on a background
thread for tests, notebooks and demos.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any

from weft.errors import ConfigError, ModelError, ServeError
from weft.exec._policy import BackendChoice
from weft.exec._service import ServiceThread
from weft.serve._batcher import Arrays, Batcher, BatcherStatistics, RunBatch
from weft.serve._config import ServerConfig, choose_backends
from weft.serve._http import Phase

if TYPE_CHECKING:
    from weft.exec import Executor
    from weft.serve._service import Service
    from weft.serve._worker import ModelRef

__all__ = ["Server", "ServerConfig", "ServerStatistics", "serve_in_thread"]

log = logging.getLogger(__name__)
_server_ids = itertools.count(1)


def _nothing() -> None:
    """What "serving" tells a server in the foreground (no thread waits for it)."""

#: Connections the kernel queues before the server accepts them: uvicorn's default, far
#: above any queue_size so that a burst is queued and answered (maybe with a 503) rather
#: than refused by the kernel, which caps it at net.core.somaxconn anyway.
LISTEN_BACKLOG = 2048
#: How long a shutdown that cut the requests in flight waits for their 503s to be written.
_CUT_ANSWER_SECONDS = 5.0
#: uvicorn's graceful shutdown (whole seconds) waits for the other routes' responses after
#: the drain has answered every inference request; 0 would cut those off mid-write.
_MIN_GRACEFUL_SHUTDOWN_SECONDS = 1


@dataclass(frozen=True, kw_only=True)
class ServerStatistics:
    """A snapshot: readiness, requests in flight, the backends and why, each model's batcher.

    ``model_backends`` holds each model's backend and the reason it was chosen (each
    model is chosen for on its own, unless a backend was requested for all).
    ``backend`` is the one backend every model runs on, or the backends used joined
    with ``+`` (``"process+thread"``); ``backend_reason`` the reason, or each model's.

    ``ready`` is true once the models are loaded and the port is open (also while
    draining); the HTTP readiness route answers 503 while ``draining``. ``cut`` counts
    the requests a shutdown answered 503 instead of finishing them (past
    ``drain_timeout`` or at a second interrupt).
    """

    ready: bool
    draining: bool
    in_flight: int
    backend: str
    backend_reason: str
    models: dict[str, BatcherStatistics]
    cut: int = 0
    model_backends: dict[str, BackendChoice] = field(default_factory=dict)


_NOT_STARTED = BackendChoice(backend="?", reason="not started")


class Server:
    """A V2 inference server for ``models`` (spec strings, classes, instances or functions).

    A resource: ``with Server(models, config) as server:`` starts it on a background
    thread and drains and stops it on exit; so does :meth:`start` / :meth:`close`.
    """

    def __init__(self, models: Sequence[Any], config: ServerConfig | None = None) -> None:
        if isinstance(models, str | bytes) or not isinstance(models, Sequence) or not models:
            raise ConfigError("models must be a non-empty list of model specs, classes or instances")
        self.config = config or ServerConfig()
        self._specs = list(models)
        self._id = next(_server_ids)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._uvicorn: Any = None
        self._service: Service | None = None
        self._thread: ServiceThread | None = None
        self._ready: Callable[[], None] = _nothing  # says "serving" to a ServiceThread waiting in start()
        self._url: str | None = None
        self._backends: dict[str, BackendChoice] = {}  # by model: spec labels until loaded, then served names
        self._closing = False  # close() was called (maybe before the loop could hear it)
        self._drain_task: asyncio.Task[None] | None = None
        self._on_ready: Callable[[Server], None] | None = None
        # statistics() asked from other threads, answered on the loop thread
        self._snapshot_lock = threading.Lock()
        self._snapshots: set[Future[ServerStatistics]] = set()
        self._loop_done = False
        self._interrupted = asyncio.Event()  # a second interrupt while draining
        self._cut = 0  # requests in flight a shutdown answered 503 instead of waiting for

    # -- public --------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._url is None:
            raise ServeError("the server has not started: call start() or use it in a with block")
        return self._url

    @property
    def models(self) -> list[str]:
        """The served model names (after start)."""
        return [] if self._service is None else list(self._service.models)

    def run(self, on_ready: Callable[[Server], None] | None = None) -> None:
        """Serve in the foreground until SIGTERM/SIGINT, then drain and return.

        ``on_ready(server)`` is called (on the server's loop thread) once the models are
        loaded and the port is open.
        """
        self._check_startable()
        self._on_ready = on_ready
        try:
            _run_loop(self._main(handle_signals=True))
        finally:
            self._finish_snapshots()

    def start(self) -> str:
        """Serve on a background thread; returns the base URL once models are loaded."""
        self._check_startable()
        # the event loop for the server's whole life; the models run on a weft.exec executor
        self._thread = ServiceThread(self._serve_in_thread, name=f"weft-serve-{self._id}")
        self._thread.start()
        return self.url

    def _check_startable(self) -> None:
        if self._thread is not None or self._loop is not None:
            raise ServeError("this server was already started: create another Server to serve again")
        if self._closing:
            raise ServeError("this server was closed: create another Server to serve again")

    def close(self, timeout: float | None = None) -> None:
        """Drain (refuse new requests, finish those in flight) and stop.

        Waits up to ``timeout`` seconds (None: as long as it takes) for the background
        thread. Safe to call more than once, before start, or from another thread while
        :meth:`run` serves.
        """
        self._closing = True  # before reading _loop: a loop starting now sees it once serving
        loop, thread = self._loop, self._thread
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing left to stop
                loop.call_soon_threadsafe(self._begin_drain)
        if thread is not None:
            thread.join(timeout)

    def stop(self, timeout: float | None = None) -> None:
        """The same as :meth:`close` (the counterpart of :meth:`start`)."""
        self.close(timeout)

    def statistics(self) -> ServerStatistics:
        """A snapshot, taken on the server's loop thread so that its counters agree."""
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread:
            return self._snapshot()
        future: Future[ServerStatistics] = Future()
        with self._snapshot_lock:
            if self._loop_done:
                return self._snapshot()
            self._snapshots.add(future)
            try:
                loop.call_soon_threadsafe(self._answer_snapshot, future)
            except RuntimeError:  # closed between the loop's end and _finish_snapshots
                self._snapshots.discard(future)
                return self._snapshot()
        return future.result()

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- statistics ----------------------------------------------------------------
    def _snapshot(self) -> ServerStatistics:
        service = self._service
        models = {} if service is None else {n: m.batcher.statistics() for n, m in service.models.items()}
        summary = _summary(self._backends)
        return ServerStatistics(ready=service is not None and service.readiness.started,
                                draining=service is not None and service.readiness.draining,
                                in_flight=0 if service is None else service.in_flight,
                                backend=summary.backend, backend_reason=summary.reason, models=models,
                                cut=self._cut, model_backends=dict(self._backends))

    def _answer_snapshot(self, future: Future[ServerStatistics]) -> None:
        with self._snapshot_lock:
            self._snapshots.discard(future)
        if not future.done():
            future.set_result(self._snapshot())

    def _finish_snapshots(self) -> None:
        """After the loop ended: answer what it will no longer run, and every later call directly."""
        with self._snapshot_lock:
            self._loop_done = True
            waiting, self._snapshots = self._snapshots, set()
        for future in waiting:
            if not future.done():
                future.set_result(self._snapshot())

    # -- the loop ------------------------------------------------------------------
    def _serve_in_thread(self, ready: Callable[[], None]) -> None:
        self._ready = ready
        try:
            _run_loop(self._main(handle_signals=False))
        finally:
            self._finish_snapshots()

    async def _main(self, *, handle_signals: bool) -> None:
        try:
            import uvicorn

            from weft.serve._routes import build_fastapi
        except ImportError as exc:
            raise ServeError(f"weft serve needs the serve extra ({exc.name} is missing): "
                             "pip install 'weft[serve]'") from exc
        import weft.exec
        from weft.serve import _worker
        from weft.serve._adapters import model_label
        from weft.serve._app import App
        from weft.serve._refusal import protocol_class

        cfg = self.config
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        choices = choose_backends(cfg, self._specs)
        self._backends = {model_label(spec): choice for spec, choice in zip(self._specs, choices, strict=True)}
        for label, choice in self._backends.items():
            log.debug("weft serve: model %s on backend %s (%s)", label, choice.backend, choice.reason)
        # Bound before the models load: a port in use is said at once, not after minutes of loading.
        sock = _listen(cfg.host, cfg.port)
        # One executor per backend in use, each with cfg.workers workers.
        executors: dict[str, Executor] = {}
        try:
            for backend in dict.fromkeys(c.backend for c in choices):
                # A backend the server chose gets the reason; one the user named (maybe registered
                # with weft.exec.register, whose factory need only take workers=) keeps its own.
                reasons = dict.fromkeys(c.reason for c in choices if c.backend == backend)
                options = {"reason": "; ".join(reasons)} if cfg.backend == "auto" else {}
                executors[backend] = weft.exec.create(backend, workers=cfg.workers, **options)
        except BaseException:
            for made in executors.values():
                made.close()
            sock.close()
            raise
        refs: list[ModelRef] = []
        try:
            service = self._service = await self._load([executors[c.backend] for c in choices], choices, refs)
            port = sock.getsockname()[1]
            host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
            self._url = f"http://{host}:{port}"
            app = App(service, build_fastapi(service))
            config = uvicorn.Config(app, lifespan="off", log_level=cfg.log_level, access_log=False,
                                    timeout_graceful_shutdown=max(_MIN_GRACEFUL_SHUTDOWN_SECONDS,
                                                                  int(cfg.drain_timeout)),
                                    server_header=False, backlog=LISTEN_BACKLOG, proxy_headers=False,
                                    http=protocol_class(app) or "auto")
            server = self._uvicorn = _Uvicorn(config, self, handle_signals)
            serving = asyncio.ensure_future(server.serve(sockets=[sock]))
            startup = asyncio.ensure_future(server.startup_finished.wait())
            await asyncio.wait([startup, serving], return_when=asyncio.FIRST_COMPLETED)
            startup.cancel()
            if server.started:
                service.readiness.phase = Phase.SERVING
            self._ready()
            if self._closing:  # close() came while the models loaded
                self._begin_drain()
            elif self._on_ready is not None and server.started:
                self._on_ready(self)
            log.debug("weft serve: %s on %s (backend %s)", ", ".join(service.models), self._url,
                      _summary(self._backends).backend)
            await serving
        finally:
            sock.close()
            for model in (self._service.models.values() if self._service else ()):
                if not model.batcher.closed:
                    await model.batcher.drain()
            # A shutdown that cut requests does not wait for the batches they were in either.
            for executor in executors.values():
                executor.close(cancel=True, timeout=0 if self._cut else None)
            for ref in refs:
                _worker.forget(ref.key)

    async def _load(self, executors: list[Executor], choices: list[BackendChoice],
                    refs: list[ModelRef]) -> Service:
        """Load every model on its executor's workers; the service that answers for them."""
        import weft
        from weft.serve import _worker
        from weft.serve._failures import details
        from weft.serve._metrics import Metrics
        from weft.serve._service import ServedModel, Service

        cfg = self.config
        described: list[_worker.ModelDescription] = []
        for index, (spec, executor) in enumerate(zip(self._specs, executors, strict=True)):
            ref = _worker.ModelRef(spec, f"{os.getpid()}-{self._id}-{index}")
            refs.append(ref)
            try:
                info = await asyncio.wrap_future(executor.submit(_worker.describe, ref))
            except ModelError as exc:
                text = details(exc)
                if text is not None:  # the user's traceback, for the log only
                    log.error("%s\n%s", exc, text.rstrip())
                raise
            if any(d.name == info.name for d in described):
                raise ConfigError(f"two models are named {info.name!r}: serve one as othername=spec")
            described.append(info)
        self._backends = {info.name: choice for info, choice in zip(described, choices, strict=True)}
        served: dict[str, ServedModel] = {}
        metrics = Metrics([d.name for d in described],
                          lambda: {n: m.batcher.statistics() for n, m in served.items()},
                          lambda: 0 if self._service is None else self._service.in_flight)
        batching = cfg.batching()
        for ref, info, executor in zip(refs, described, executors, strict=True):
            batcher = Batcher(_runner(executor, ref), batching, on_batch=metrics.batch(info.name))
            served[info.name] = ServedModel(info.name, info.platform, info.inputs, info.outputs, batcher)
        return Service(models=served, metrics=metrics, timeout=cfg.timeout, max_body_bytes=cfg.max_body_bytes, token=cfg.token,
                       server_version=weft.__version__)

    # -- draining ------------------------------------------------------------------
    def _on_signal(self, sig: int) -> None:
        if self._drain_task is not None or (self._uvicorn is not None and self._uvicorn.should_exit):
            if sig == signal.SIGINT and self._loop is not None:
                self._loop.call_soon_threadsafe(self._interrupt)
            return
        log.warning("weft serve: %s received: draining", signal.Signals(sig).name)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._begin_drain)

    def _interrupt(self) -> None:
        """On the loop thread, at a second interrupt: stop waiting for the requests in flight."""
        if self._drain_task is not None and not self._drain_task.done():
            self._interrupted.set()
        elif self._uvicorn is not None:  # drained already: only connections are left to close
            self._uvicorn.force_exit = True
            self._uvicorn.should_exit = True

    def _begin_drain(self) -> None:
        """On the loop thread: start draining, or note that it must once serving begins."""
        self._closing = True
        if self._drain_task is None and self._service is not None and self._uvicorn is not None:
            self._drain_task = asyncio.ensure_future(self._drain(self._service, self._uvicorn))

    async def _drain(self, service: Service, server: Any) -> None:
        """Refuse new requests and wait for those in flight, up to ``drain_timeout`` or a
        second interrupt; then answer those left 503 (server shutting down) and stop."""
        service.readiness.phase = Phase.DRAINING

        async def drained() -> None:
            await asyncio.gather(*(m.batcher.drain() for m in service.models.values()))
            await service.wait_idle()

        waiting = asyncio.ensure_future(drained())
        interrupted = asyncio.ensure_future(self._interrupted.wait())
        try:
            await asyncio.wait([waiting, interrupted], timeout=self.config.drain_timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            interrupted.cancel()
        if not waiting.done():
            waiting.cancel()
            why = ("a second interrupt" if self._interrupted.is_set()
                   else f"the drain timeout ({self.config.drain_timeout:g} s)")
            cut = service.cut_in_flight()
            self._cut += cut
            log.error("weft serve: %d request(s) still in flight after %s: answered 503 (server shutting down)",
                      cut, why)
            # The cut requests answer at once (nothing they wait for is awaited any more);
            # the bound is for a client that does not read its answer.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CUT_ANSWER_SECONDS):
                    await service.wait_idle()
        server.should_exit = True


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound; ServeError naming the address when it cannot be."""
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only
    # when the listening socket says so; with proto 0, Nagle plus delayed ACKs add ~40 ms
    # per keep-alive response (uvloop hides it; the stdlib loop on 3.13t does not).
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}: choose another port "
                         "(0 = any free port) or host") from exc
    sock.set_inheritable(True)
    return sock


def _summary(backends: dict[str, BackendChoice]) -> BackendChoice:
    """One backend and reason for the whole server: the models' own when they all agree."""
    choices = set(backends.values())
    if not choices:
        return _NOT_STARTED
    if len(choices) == 1:
        return choices.pop()
    return BackendChoice(backend="+".join(sorted({c.backend for c in choices})),
                         reason="; ".join(f"{name} on {c.backend}: {c.reason}" for name, c in backends.items()))


def _runner(executor: Executor, ref: ModelRef) -> RunBatch:
    """The batcher's hand-off to the workers: run one batch of ``ref``'s model."""
    from weft.serve._worker import predict

    def run(inputs: Arrays) -> asyncio.Future[Arrays]:
        return asyncio.wrap_future(executor.submit(predict, ref, inputs))

    return run


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    factory = None
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        pass
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main)


def _make_uvicorn_class() -> type:
    import uvicorn

    class _Server(uvicorn.Server):  # type: ignore[misc]
        def __init__(self, config: Any, owner: Server, handle_signals: bool) -> None:
            super().__init__(config)
            self._owner = owner
            self._handle_signals = handle_signals
            self.startup_finished = asyncio.Event()

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            try:
                await super().startup(sockets=sockets)
            finally:
                self.startup_finished.set()

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if not self._handle_signals or threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            self._owner._on_signal(sig)

    return _Server


class _LazyUvicorn:
    """Builds the uvicorn server subclass on first use (uvicorn is imported only to serve)."""

    cls: type | None = None

    def __call__(self, config: Any, owner: Server, handle_signals: bool) -> Any:
        if self.cls is None:
            self.cls = _make_uvicorn_class()
        return self.cls(config, owner, handle_signals)


_Uvicorn = _LazyUvicorn()


@contextlib.contextmanager
def serve_in_thread(models: Sequence[Any], config: ServerConfig | None = None) -> Iterator[str]:
    """Run a server on a background thread; yields its base URL, drains and stops on exit.

    The default config here listens on a free port (``port=0``).
    """
    with Server(models, config or ServerConfig(port=0)) as server:
        yield server.url
