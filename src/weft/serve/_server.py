"""The server's lifecycle: load models on workers, serve HTTP, drain on a signal.

``Server.run()`` serves in the foreground (the CLI): SIGTERM or SIGINT makes it report
not-ready, refuse new inference with 503, finish every request in flight, then exit
(within ``drain_timeout_s``; a second SIGINT exits at once). ``Server.start()`` /
``stop()`` and :func:`serve_in_thread` run it on a background thread for tests and demos.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from weft.errors import ConfigError, ServeError
from weft.serve._batcher import Batcher, BatcherConfig, BatcherStatistics

__all__ = ["Server", "ServerConfig", "ServerStatistics", "serve_in_thread"]

log = logging.getLogger(__name__)
_server_ids = itertools.count(1)


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """How a server listens, batches and protects itself.

    ``port=0`` picks a free port. ``backend`` is ``"thread"``, ``"process"`` or
    ``"auto"`` (threads when the GIL is off or every model releases it, else processes).
    ``timeout_s`` is the longest a request waits; a request may shorten it. ``queue_size``
    bounds the inference requests a model holds, waiting or computing (503 beyond).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    max_batch_size: int = 32
    max_delay_ms: float = 2.0
    workers: int = 2
    backend: str = "auto"
    queue_size: int = 256
    timeout_s: float = 30.0
    token: str | None = None
    max_body_bytes: int = 64 * 1024 * 1024
    drain_timeout_s: float = 30.0
    log_level: str = "warning"

    def __post_init__(self) -> None:
        if self.backend not in ("auto", "thread", "process"):
            raise ConfigError(f"backend must be 'auto', 'thread' or 'process', got {self.backend!r}")
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0..65535 (0 = any free port), got {self.port!r}")
        for name in ("timeout_s", "drain_timeout_s", "max_delay_ms"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value < 0 or (name == "timeout_s" and value == 0):
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        if not isinstance(self.max_body_bytes, int) or self.max_body_bytes < 1:
            raise ConfigError(f"max_body_bytes must be a positive integer, got {self.max_body_bytes!r}")
        BatcherConfig(max_batch_size=self.max_batch_size, max_delay=self.max_delay_ms / 1000,
                      queue_size=self.queue_size, workers=self.workers)


@dataclass(frozen=True, kw_only=True)
class ServerStatistics:
    """A snapshot: readiness, requests in flight, the backend and why, each model's batcher."""

    ready: bool
    draining: bool
    in_flight: int
    backend: str
    backend_reason: str
    models: dict[str, BatcherStatistics]


def choose_backend(config: ServerConfig, specs: Sequence[Any]) -> tuple[str, str]:
    """The executor backend for these models, with the reason."""
    if config.backend != "auto":
        return config.backend, f"backend={config.backend!r} was requested"
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    if not gil:
        return "thread", "the GIL is off: threads run models in parallel"
    from weft.serve._adapters import split_name

    for spec in specs:
        _, target = split_name(spec)
        if isinstance(target, str) and target.lower().endswith((".onnx", ".pt", ".pth", ".ts")):
            continue
        if isinstance(target, str):
            from weft.serve._python_adapter import resolve

            target = resolve(target)
        if not getattr(target, "releases_gil", False):
            name = getattr(target, "__name__", None) or type(target).__name__
            return "process", (f"the GIL is on and model {name!r} does not declare releases_gil = True: "
                               "processes with shared-memory tensors")
    return "thread", "every model releases the GIL (NumPy, onnxruntime, torch): threads share tensors by reference"


class Server:
    """A V2 inference server for ``models`` (spec strings, classes, instances or functions)."""

    def __init__(self, models: Sequence[Any], config: ServerConfig | None = None) -> None:
        if isinstance(models, str | bytes) or not isinstance(models, Sequence) or not models:
            raise ConfigError("models must be a non-empty list of model specs, classes or instances")
        self.config = config or ServerConfig()
        self._specs = list(models)
        self._id = next(_server_ids)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._uvicorn: Any = None
        self._state: Any = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._url: str | None = None
        self._backend = ("?", "not started")
        self._drain_task: asyncio.Task[None] | None = None
        self._on_ready: Callable[[Server], None] | None = None

    # -- public --------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._url is None:
            raise ServeError("the server has not started")
        return self._url

    def run(self, on_ready: Callable[[Server], None] | None = None) -> None:
        """Serve in the foreground until SIGTERM/SIGINT, then drain and return.

        ``on_ready(server)`` is called once the models are loaded and the port is open.
        """
        self._on_ready = on_ready
        _run_loop(self._main(handle_signals=True))

    def start(self) -> str:
        """Serve on a background thread; returns the base URL once models are loaded."""
        if self._thread is not None:
            raise ServeError("this server was already started")
        self._thread = threading.Thread(target=self._thread_main, name=f"weft-serve-{self._id}", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self.url

    def stop(self, timeout: float | None = None) -> None:
        """Drain (finish in-flight requests) and stop the background server."""
        loop, thread = self._loop, self._thread
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._begin_drain)
        if thread is not None:
            thread.join(timeout)

    @property
    def models(self) -> list[str]:
        """The served model names (after start)."""
        return [] if self._state is None else list(self._state.models)

    def statistics(self) -> ServerStatistics:
        state = self._state
        models = {} if state is None else {n: m.batcher.statistics() for n, m in state.models.items()}
        return ServerStatistics(ready=bool(state and state.ready), draining=bool(state and state.draining),
                                in_flight=0 if state is None else state.in_flight,
                                backend=self._backend[0], backend_reason=self._backend[1], models=models)

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals -----------------------------------------------------------------
    def _thread_main(self) -> None:
        try:
            _run_loop(self._main(handle_signals=False))
        except BaseException as exc:
            self._error = exc
        finally:
            self._started.set()

    async def _main(self, *, handle_signals: bool) -> None:
        import uvicorn

        import weft
        import weft.exec
        from weft.serve import _worker
        from weft.serve._app import App, ServedModel, State
        from weft.serve._metrics import Metrics
        from weft.serve._refusal import protocol_class
        from weft.serve._types import TensorSpec

        cfg = self.config
        self._loop = asyncio.get_running_loop()
        self._backend = choose_backend(cfg, self._specs)
        log.info("weft serve: backend %s (%s)", *self._backend)
        executor = weft.exec.create(self._backend[0], workers=cfg.workers, reason=self._backend[1])
        refs: list[_worker.ModelRef] = []
        try:
            described: list[dict[str, Any]] = []
            for index, spec in enumerate(self._specs):
                ref = _worker.ModelRef(spec, f"{os.getpid()}-{self._id}-{index}")
                refs.append(ref)
                info = await asyncio.wrap_future(executor.submit(_worker.describe, ref))
                if any(d["name"] == info["name"] for d in described):
                    raise ConfigError(f"two models are named {info['name']!r}: serve one as othername=spec")
                described.append(info)
            served: dict[str, ServedModel] = {}
            metrics = Metrics([d["name"] for d in described],
                              lambda: {n: m.batcher.statistics() for n, m in served.items()},
                              lambda: 0 if self._state is None else int(self._state.in_flight))
            batching = BatcherConfig(max_batch_size=cfg.max_batch_size, max_delay=cfg.max_delay_ms / 1000,
                                     queue_size=cfg.queue_size, workers=cfg.workers)
            for ref, info in zip(refs, described, strict=True):
                name = info["name"]
                served[name] = ServedModel(name, info["platform"],
                                           tuple(TensorSpec.from_dict(t) for t in info["inputs"]),
                                           tuple(TensorSpec.from_dict(t) for t in info["outputs"]),
                                           Batcher(_runner(executor, ref), batching, on_batch=metrics.batch(name)))
            state = State(models=served, metrics=metrics, timeout_s=cfg.timeout_s, max_body_bytes=cfg.max_body_bytes,
                          token=cfg.token, server_version=weft.__version__)
            self._state = state
            # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only
            # when the listening socket says so; with proto 0, Nagle plus delayed ACKs add ~40 ms
            # per keep-alive response (uvloop hides it; the stdlib loop on 3.13t does not).
            sock = socket.socket(socket.AF_INET6 if ":" in cfg.host else socket.AF_INET, socket.SOCK_STREAM,
                                 socket.IPPROTO_TCP)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((cfg.host, cfg.port))
            sock.set_inheritable(True)
            port = sock.getsockname()[1]
            host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
            self._url = f"http://{host}:{port}"
            app = App(state)
            config = uvicorn.Config(app, lifespan="off", log_level=cfg.log_level, access_log=False,
                                    timeout_graceful_shutdown=max(1, int(cfg.drain_timeout_s)), server_header=False,
                                    backlog=2048, proxy_headers=False, http=protocol_class(app) or "auto")
            server = _Uvicorn(config, self, handle_signals)
            self._uvicorn = server
            serving = asyncio.ensure_future(server.serve(sockets=[sock]))
            while not server.started and not serving.done():
                await asyncio.sleep(0.005)
            state.ready = server.started
            self._started.set()
            if self._on_ready is not None and state.ready:
                self._on_ready(self)
            log.info("weft serve: %s on %s (backend %s)", ", ".join(served), self._url, self._backend[0])
            await serving
            sock.close()
        finally:
            for batcher in (self._state.models.values() if self._state else ()):
                if not batcher.batcher.closed:
                    await batcher.batcher.drain()
            executor.close(cancel=True)
            for ref in refs:
                _worker.forget(ref.key)

    def _on_signal(self, sig: int) -> None:
        loop = self._loop
        if self._drain_task is not None or (self._uvicorn is not None and self._uvicorn.should_exit):
            if sig == signal.SIGINT and self._uvicorn is not None:
                log.warning("weft serve: second interrupt, exiting now")
                self._uvicorn.force_exit = True
                self._uvicorn.should_exit = True
            return
        log.warning("weft serve: %s received: draining", signal.Signals(sig).name)
        if loop is not None:
            loop.call_soon_threadsafe(self._begin_drain)

    def _begin_drain(self) -> None:
        if self._drain_task is None:
            self._drain_task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        state, server = self._state, self._uvicorn
        if state is None or server is None:
            return
        state.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.drain_timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                await asyncio.gather(*(m.batcher.drain() for m in state.models.values()))
                while state.in_flight:
                    state.idle.clear()
                    if state.in_flight:
                        await state.idle.wait()
        except TimeoutError:
            log.error("weft serve: %d request(s) still in flight after %.1f s; exiting anyway",
                      state.in_flight, self.config.drain_timeout_s)
            server.force_exit = True
        server.should_exit = True


def _runner(executor: Any, ref: Any) -> Any:
    from weft.serve._worker import predict

    def run(inputs: dict[str, Any]) -> asyncio.Future[Any]:
        return asyncio.wrap_future(executor.submit(predict, ref, inputs))

    return run


def _run_loop(main: Any) -> None:
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
    server = Server(models, config or ServerConfig(port=0))
    url = server.start()
    try:
        yield url
    finally:
        server.stop()
