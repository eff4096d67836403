"""Serving the runs page: in the foreground (``weft runs ui``) or on a background thread (tests).

A database of an older schema is upgraded once, by a short write, before serving;
after that the page only reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sqlite3
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from weft.errors import ConfigError
from weft.exec._service import ServiceThread
from weft.train._runs_ui._store import Store
from weft.train._tracker_schema import SCHEMA_VERSION

__all__ = ["RunsPageServer"]

log = logging.getLogger(__name__)


def _upgrade_if_old(path: Path) -> None:
    uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            (version,) = db.execute("PRAGMA user_version").fetchone()
    except sqlite3.Error as exc:
        raise ConfigError(f"{str(path)!r} is not a readable tracker database: {exc}") from None
    if version < SCHEMA_VERSION and os.access(path, os.W_OK):
        from weft.train._tracker import Tracker

        log.info("upgrading %s to tracker schema %d", path, SCHEMA_VERSION)
        Tracker(path).close()


class RunsPageServer:
    """The runs page for the tracker database ``db`` on ``host:port`` (port 0: any free port)."""

    def __init__(self, db: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int = 8080,
                 token: str | None = None) -> None:
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"port must be 0..65535 (0 = any free port), got {port!r}")
        if token is not None and not token:
            raise ConfigError("token must be a non-empty string (or None for no token)")
        path = Path(db)
        if not path.is_file():
            raise ConfigError(f"no tracker database at {str(path)!r}; pass --db or set WEFT_DB")
        _upgrade_if_old(path)
        self.store = Store(path)
        self.host, self.port, self.token = host, port, token
        self._server: Any = None
        self._thread: ServiceThread | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        if self._sock is None:
            raise ConfigError("the runs page has not started")
        port = self._sock.getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}"

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot listen on {self.host}:{self.port} ({exc.strerror}); "
                              "choose another --port (0 = any free port)") from None
        sock.listen(128)
        return sock

    def _uvicorn(self) -> Any:
        import uvicorn

        from weft.train._runs_ui._app import create_app

        config = uvicorn.Config(create_app(self.store, token=self.token), lifespan="off", log_level="warning",
                                access_log=False, server_header=False)
        # uvicorn takes SIGINT/SIGTERM only on the main thread: the foreground command
        return uvicorn.Server(config)

    def run(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Serve in the foreground until Ctrl-C (or SIGTERM); ``on_ready(url)`` once it listens."""
        try:
            self._sock = self._bind()
            self._server = self._uvicorn()

            async def main() -> None:
                serving = asyncio.ensure_future(self._server.serve(sockets=[self._sock]))
                while not self._server.started and not serving.done():
                    await asyncio.sleep(0.005)
                if on_ready is not None and self._server.started:
                    on_ready(self.url)
                await serving

            asyncio.run(main())
        finally:
            self._close()

    def start(self) -> str:
        """Serve on a background thread; returns the base URL once it accepts connections."""
        if self._thread is not None:
            raise ConfigError("this runs page was already started")
        try:
            self._sock = self._bind()
            self._server = self._uvicorn()
        except BaseException:
            self._close()
            raise
        self._thread = ServiceThread(self._serve_in_thread, name="weft-runs-ui")  # the page's event loop
        self._thread.start()
        return self.url

    def _serve_in_thread(self, ready: Callable[[], None]) -> None:
        async def main() -> None:
            serving = asyncio.ensure_future(self._server.serve(sockets=[self._sock]))
            while not self._server.started and not serving.done():
                await asyncio.sleep(0.005)
            ready()
            await serving

        asyncio.run(main())

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the background server and close the database."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._close()

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self.store.close()

    def __enter__(self) -> RunsPageServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
