"""An experiment tracker in one SQLite file: runs, params, tags, metrics, artifacts.

Metric values are stored faithfully, NaN and +/-inf included. A run remembers the
process that writes it: a ``running`` run whose process is gone (killed, crashed,
out of memory) on this host reads as ``crashed``. A run that ends in an exception
is ``failed`` and keeps the exception's traceback in ``RunInfo.error``.

The database is in WAL mode (readers never block the writer), every write is one
``BEGIN IMMEDIATE`` transaction (the write lock is taken up front, so two writers
never deadlock upgrading a read lock), SQLite's ``busy_timeout`` waits for the lock
and :func:`weft.train.retry` covers what is left: several threads and processes
can log at once and no "database is locked" reaches the caller. Each thread uses
its own connection.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import sqlite3
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

import numpy as np

from weft.errors import ConfigError, TrackerError
from weft.runtime import pid_alive
from weft.train._retry import retry
from weft.train._tracker_schema import ensure_schema, write_points

__all__ = ["MetricSeries", "Run", "RunInfo", "Tracker", "TrackerStatistics"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The longest traceback kept for a failed run (its end, where the error is, is kept).
MAX_ERROR_CHARS = 20_000
_HOST = socket.gethostname()
_RUN_COLUMNS = "id, name, weft_status(status, pid, host), created, ended, params, tags, error"


class _Busy(sqlite3.OperationalError):
    """The database stayed locked past busy_timeout: worth another try."""


@dataclass(frozen=True, kw_only=True)
class RunInfo:
    id: str
    name: str
    status: str
    created: float
    ended: float | None
    params: Mapping[str, Any] = field(default_factory=dict)
    tags: Mapping[str, Any] = field(default_factory=dict)
    summary: Mapping[str, float] = field(default_factory=dict)   # last value of each metric
    artifacts: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None   # the traceback of a failed run


@dataclass(frozen=True, kw_only=True)
class MetricSeries:
    """One metric of one run, ordered by step."""

    run_id: str
    key: str
    steps: np.ndarray
    values: np.ndarray
    times: np.ndarray

    def to_lists(self) -> dict[str, list[float]]:
        return {"steps": self.steps.tolist(), "values": self.values.tolist(), "times": self.times.tolist()}


@dataclass(frozen=True, kw_only=True)
class TrackerStatistics:
    path: str
    writes: int
    rows_written: int
    busy_retries: int
    connections: int


class Tracker:
    """Runs and their metrics in the SQLite file ``path`` (created with its directory)."""

    def __init__(self, path: str | os.PathLike[str] = "runs/weft.db", *, timeout: float = 30.0) -> None:
        if not isinstance(timeout, int | float) or timeout <= 0:
            raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout = float(timeout)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._writes = self._rows = self._busy = 0
        self._closed = False
        self._write(lambda db: ensure_schema(db), schema=True)

    # -- connections and the retried write --------------------------------------------
    def _db(self) -> sqlite3.Connection:
        if self._closed:
            raise TrackerError(f"this Tracker on {str(self.path)!r} is closed; create a new one")
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            db.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            self._retrying(lambda: db.execute("PRAGMA journal_mode = WAL").fetchone())
            db.execute("PRAGMA synchronous = NORMAL")
            db.create_function("weft_status", 3, effective_status)
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    def _retrying(self, fn: Callable[[], T]) -> T:
        def on_retry(event: Any) -> None:
            with self._lock:
                self._busy += 1

        @retry(attempts=30, on=_Busy, backoff=0.01, max_delay=0.5, jitter=0.5, on_retry=on_retry)
        def attempt() -> T:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                text = str(exc).lower()
                if "locked" in text or "busy" in text:
                    raise _Busy(str(exc)) from exc
                raise

        try:
            return attempt()
        except _Busy as exc:
            raise TrackerError(f"the experiment database {str(self.path)!r} stayed locked ({exc}); another "
                               "process holds a long write transaction") from exc
        except sqlite3.Error as exc:
            raise TrackerError(f"the experiment database {str(self.path)!r} refused an operation: {exc}") from exc

    def _write(self, fn: Callable[[sqlite3.Connection], int | None], *, schema: bool = False) -> None:
        db = self._db()

        def transaction() -> int | None:
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = fn(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return rows

        rows = self._retrying(transaction)
        if not schema:
            with self._lock:
                self._writes += 1
                self._rows += rows or 0

    def _read(self, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        db = self._db()
        return self._retrying(lambda: db.execute(sql, tuple(args)).fetchall())

    # -- writing ---------------------------------------------------------------------
    def start_run(self, name: str | None = None, *, params: Mapping[str, Any] | None = None,
                  tags: Mapping[str, Any] | None = None) -> Run:
        """Create a run (status ``running``); use it as a context manager to finish it."""
        run_id = uuid.uuid4().hex[:12]
        name = name or time.strftime("run-%Y%m%d-%H%M%S-") + run_id[:4]
        params_json, tags_json = _dumps("params", params), _dumps("tags", tags)
        self._write(lambda db: db.execute(
            "INSERT INTO runs (id, name, status, created, params, tags, pid, host) "
            "VALUES (?, ?, 'running', ?, ?, ?, ?, ?)",
            (run_id, name, time.time(), params_json, tags_json, os.getpid(), _HOST)).rowcount)
        return Run(self, run_id, name)

    def resume_run(self, ref: str) -> Run:
        """Continue logging to an existing run (marks it ``running`` again)."""
        info = self.run(ref)
        self._write(lambda db: db.execute(
            "UPDATE runs SET status='running', ended=NULL, error=NULL, pid=?, host=? WHERE id=?",
            (os.getpid(), _HOST, info.id)).rowcount)
        last = self._read("SELECT MAX(step) FROM metrics WHERE run_id=?", (info.id,))[0][0]
        return Run(self, info.id, info.name, next_step=0 if last is None else int(last) + 1)

    # -- querying --------------------------------------------------------------------
    def runs(self, *, status: str | None = None, limit: int | None = None) -> list[RunInfo]:
        """Runs, newest first, each with the last value of every metric and its artifacts.

        ``status`` is as shown: ``crashed`` selects runs whose writing process is gone.
        """
        sql = f"SELECT {_RUN_COLUMNS} FROM runs"
        args: list[Any] = []
        if status is not None:
            sql += " WHERE weft_status(status, pid, host) = ?"
            args.append(status)
        sql += " ORDER BY created DESC, rowid DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self._read(sql, args)
        ids = [r[0] for r in rows]
        summaries, artifacts = self._summaries(ids), self._artifacts(ids)
        return [_info(r, summaries.get(r[0], {}), artifacts.get(r[0], {})) for r in rows]

    def _summaries(self, ids: list[str]) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            rows = self._read(f"SELECT run_id, key, last_value FROM metric_summary WHERE run_id IN ({marks}) "
                              "ORDER BY key", chunk)
            for run_id, key, value in rows:
                out.setdefault(run_id, {})[key] = math.nan if value is None else value
        return out

    def _artifacts(self, ids: list[str]) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            rows = self._read(f"SELECT run_id, name, path FROM artifacts WHERE run_id IN ({marks}) "
                              "ORDER BY time, rowid", chunk)
            for run_id, name, path in rows:
                out.setdefault(run_id, {})[name] = path
        return out

    def run(self, ref: str) -> RunInfo:
        """A run by id, by name (the newest of that name) or by a unique id prefix."""
        cols = f"SELECT {_RUN_COLUMNS} FROM runs"
        rows = self._read(f"{cols} WHERE id = ?", (ref,))
        rows = rows or self._read(f"{cols} WHERE name = ? ORDER BY created DESC LIMIT 1", (ref,))
        if not rows:
            rows = self._read(f"{cols} WHERE id LIKE ?", (ref.replace("%", "").replace("_", "") + "%",))
            if len(rows) > 1:
                raise TrackerError(f"run {ref!r} is ambiguous: it prefixes {[r[0] for r in rows]}; give more characters")
        if not rows:
            known = [r[0] for r in self._read("SELECT name FROM runs ORDER BY created DESC LIMIT 5")]
            raise TrackerError(f"no run {ref!r} in {str(self.path)!r} (recent runs: {known}); "
                               "see `weft runs list`")
        row = rows[0]
        return _info(row, self._summaries([row[0]]).get(row[0], {}), self._artifacts([row[0]]).get(row[0], {}))

    def metric_keys(self, ref: str) -> list[str]:
        run_id = self.run(ref).id
        return [k for (k,) in self._read("SELECT DISTINCT key FROM metrics WHERE run_id = ? ORDER BY key", (run_id,))]

    def metric(self, ref: str, key: str) -> MetricSeries:
        """One metric of one run as NumPy arrays (``.to_lists()`` for plain lists)."""
        run_id = self.run(ref).id
        rows = self._read("SELECT step, value, time FROM metrics WHERE run_id = ? AND key = ? ORDER BY step, time",
                          (run_id, key))
        data = np.array(rows, dtype=np.float64).reshape(-1, 3)
        return MetricSeries(run_id=run_id, key=key, steps=data[:, 0].astype(np.int64), values=data[:, 1],
                            times=data[:, 2])

    def metrics(self, ref: str) -> dict[str, MetricSeries]:
        return {key: self.metric(ref, key) for key in self.metric_keys(ref)}

    def best_run(self, metric: str, *, mode: Literal["min", "max"] = "min",
                 reduce: Literal["last", "min", "max"] = "last") -> tuple[RunInfo, float] | None:
        """The run whose ``metric`` (its last value, or its min or max) is best."""
        if mode not in ("min", "max") or reduce not in ("last", "min", "max"):
            raise ConfigError(f"mode must be 'min' or 'max' and reduce 'last', 'min' or 'max'; got {mode!r}, {reduce!r}")
        column = {"last": "last_value", "min": "min_value", "max": "max_value"}[reduce]
        order = "ASC" if mode == "min" else "DESC"
        # NaN is stored as NULL: a diverged run is never the best one
        rows = self._read(f"SELECT run_id, {column} FROM metric_summary WHERE key = ? AND {column} IS NOT NULL "
                          f"ORDER BY {column} {order} LIMIT 1", (metric,))
        if not rows:
            return None
        return self.run(rows[0][0]), float(rows[0][1])

    def statistics(self) -> TrackerStatistics:
        with self._lock:
            return TrackerStatistics(path=str(self.path), writes=self._writes, rows_written=self._rows,
                                     busy_retries=self._busy, connections=len(self._connections))

    def close(self) -> None:
        """Close every connection this tracker opened (in any thread)."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for db in connections:
            db.close()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Run:
    """A run being logged. ``log`` is safe from many threads."""

    def __init__(self, tracker: Tracker, run_id: str, name: str, *, next_step: int = 0) -> None:
        self.tracker, self.id, self.name = tracker, run_id, name
        self._lock = threading.Lock()
        self._next_step = next_step

    def log(self, metrics: Mapping[str, float], *, step: int | None = None) -> int:
        """Record metric values at ``step`` (default: one past the last step); returns the step."""
        if not isinstance(metrics, Mapping) or not metrics:
            raise ConfigError(f"log() takes a non-empty mapping of metric name -> number, got {metrics!r}")
        with self._lock:
            if step is None:
                step = self._next_step
            self._next_step = max(self._next_step, int(step) + 1)
        now = time.time()
        try:
            points = [(str(k), int(step), float(v), now) for k, v in metrics.items()]
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"metric values must be numbers: {exc} in {metrics!r}") from None
        self.tracker._write(lambda db: write_points(db, self.id, points))
        return int(step)

    def log_params(self, params: Mapping[str, Any]) -> None:
        self._merge("params", params)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._merge("tags", tags)

    def _merge(self, column: Literal["params", "tags"], values: Mapping[str, Any]) -> None:
        _dumps(column, values)

        def update(db: sqlite3.Connection) -> int:
            (current,) = db.execute(f"SELECT {column} FROM runs WHERE id = ?", (self.id,)).fetchone()
            merged = {**json.loads(current), **values}
            return db.execute(f"UPDATE runs SET {column} = ? WHERE id = ?", (_dumps(column, merged), self.id)).rowcount

        self.tracker._write(update)

    def log_artifact(self, path: str | os.PathLike[str], name: str | None = None) -> None:
        """Record the path of a file the run produced (the file itself is not copied)."""
        resolved = str(Path(path).resolve())
        self.tracker._write(lambda db: db.execute(
            "INSERT INTO artifacts (run_id, name, path, time) VALUES (?, ?, ?, ?)",
            (self.id, name or Path(path).name, resolved, time.time())).rowcount)

    def finish(self, status: str = "finished", *, error: BaseException | str | None = None) -> None:
        """End the run with ``status``; ``error`` (an exception or text) is kept as its error."""
        if isinstance(error, BaseException):
            error = "".join(traceback.format_exception(error))
        if error is not None:
            error = str(error)[-MAX_ERROR_CHARS:]
        self.tracker._write(lambda db: db.execute("UPDATE runs SET status = ?, ended = ?, error = ? WHERE id = ?",
                                                  (status, time.time(), error, self.id)).rowcount)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.finish("finished")
        else:
            self.finish("interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed", error=exc)

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, name={self.name!r})"


def _dumps(what: str, value: Mapping[str, Any] | None) -> str:
    if value is None:
        return "{}"
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what} must be a mapping, got {type(value).__name__}")
    try:
        return json.dumps(dict(value), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} must be JSON-serialisable: {exc}") from None


def effective_status(status: str, pid: int | None, host: str | None) -> str:
    """The status as shown: a ``running`` run whose writer on this host is gone has ``crashed``."""
    if status == "running" and pid is not None and host == _HOST and pid != os.getpid() and not pid_alive(pid):
        return "crashed"
    return status


def _chunks(ids: list[str], size: int = 500) -> Iterable[list[str]]:
    # SQLite limits the number of bound parameters in one statement
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def _info(row: tuple[Any, ...], summary: dict[str, float], artifacts: dict[str, str] | None = None) -> RunInfo:
    run_id, name, status, created, ended, params, tags, error = row
    return RunInfo(id=run_id, name=name, status=status, created=created, ended=ended, params=json.loads(params),
                   tags=json.loads(tags), summary=summary, artifacts=artifacts or {}, error=error)
