"""Read-only queries behind the runs page.

The database is opened with ``mode=ro`` (an SQLite URI), one connection per thread,
each read in one transaction (a consistent snapshot, so a cursor and the points it
covers agree). In WAL mode readers never block a training job writing, and a writer
never blocks them.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weft.errors import ConfigError
from weft.train._runs_ui._downsample import read_series
from weft.train._runs_ui._filter import FilterError, Keys, compile_field, compile_filter
from weft.train._tracker import effective_status
from weft.train._tracker_schema import SCHEMA_VERSION

__all__ = ["NotFound", "Store", "finite_or_text"]

_KEYS_TTL = 5.0   # seconds a list of param/metric/tag names is reused while runs keep coming


class NotFound(LookupError):
    """No such run (or metric)."""


def finite_or_text(value: float | None) -> float | str | None:
    """JSON has no NaN or infinity: those travel as the strings "NaN", "Infinity", "-Infinity"."""
    if value is None or math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _values(array: Any) -> list[Any]:
    values: list[Any] = array.tolist()
    import numpy as np

    bad = np.flatnonzero(~np.isfinite(array))
    for i in bad.tolist():
        values[i] = finite_or_text(values[i])
    return values


@dataclass(frozen=True)
class RunPage:
    total: int
    runs: list[dict[str, Any]]


class Store:
    """Read-only access to a tracker database for the page."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"no tracker database at {str(self.path)!r}; pass --db or set WEFT_DB")
        self._uri = f"file:{urllib.parse.quote(str(self.path.resolve()))}?mode=ro"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._keys: tuple[tuple[int, int], float, Keys, dict[str, Any]] | None = None
        with self.read() as db:
            (version,) = db.execute("PRAGMA user_version").fetchone()
        if version < SCHEMA_VERSION:
            self.close()
            raise ConfigError(f"{str(self.path)!r} was written by an older weft (schema {version}); open it once "
                              "with weft.train.Tracker (or run `weft runs ui` with write access) to upgrade it")

    # -- connections -------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self._uri, uri=True, isolation_level=None, check_same_thread=False, timeout=5.0)
            db.execute("PRAGMA query_only = ON")
            db.create_function("weft_status", 3, effective_status)
            db.create_function("weft_now", 0, time.time)
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one read transaction (one snapshot of the database)."""
        db = self._db()
        db.execute("BEGIN")
        try:
            yield db
        finally:
            db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for db in connections:
            db.close()

    # -- names -------------------------------------------------------------------
    def keys(self) -> dict[str, Any]:
        """Param, metric and tag names with how many runs have each (cached a few seconds)."""
        return self._cached_keys()[1]

    def _cached_keys(self) -> tuple[Keys, dict[str, Any]]:
        with self.read() as db:
            mark = db.execute("SELECT COUNT(*), COALESCE(MAX(rowid), 0) FROM runs").fetchone()
            cached = self._keys
            if cached is not None and cached[0] == tuple(mark) and time.monotonic() - cached[1] < _KEYS_TTL:
                return cached[2], cached[3]
            params = db.execute("SELECT j.key, COUNT(*) FROM runs, json_each(runs.params) AS j GROUP BY j.key "
                                "ORDER BY COUNT(*) DESC, j.key").fetchall()
            tags = db.execute("SELECT j.key, COUNT(*) FROM runs, json_each(runs.tags) AS j GROUP BY j.key "
                              "ORDER BY COUNT(*) DESC, j.key").fetchall()
            metrics = db.execute("SELECT key, COUNT(*) FROM metric_summary GROUP BY key "
                                 "ORDER BY COUNT(*) DESC, key").fetchall()
        listing = {"runs": mark[0],
                   "params": [{"key": k, "runs": n} for k, n in params],
                   "metrics": [{"key": k, "runs": n} for k, n in metrics],
                   "tags": [{"key": k, "runs": n} for k, n in tags]}
        keys = Keys(params=frozenset(k for k, _ in params), metrics=frozenset(k for k, _ in metrics),
                    tags=frozenset(k for k, _ in tags))
        self._keys = (tuple(mark), time.monotonic(), keys, listing)
        return keys, listing

    def _names(self) -> Keys:
        return self._cached_keys()[0]

    # -- runs --------------------------------------------------------------------
    def runs(self, *, filter_text: str = "", sort: str = "created", descending: bool = True, offset: int = 0,
             limit: int = 100, ids: Sequence[str] = ()) -> RunPage:
        """One page of runs, filtered and sorted, with every param, tag and metric summary."""
        where = compile_filter(filter_text, self._names)
        order = compile_field(sort, self._names)
        conditions: list[str] = []
        args: list[object] = []
        if where is not None:
            conditions.append(where.sql)
            args.extend(where.args)
        if ids:
            conditions.append(f"runs.id IN ({','.join('?' * len(ids))})")
            args.extend(ids)
        clause = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        direction = "DESC" if descending else "ASC"
        # missing values last whichever the direction; then newest first, for a stable order
        sql = (f"SELECT runs.id, runs.name, weft_status(runs.status, runs.pid, runs.host), runs.created, "
               f"runs.ended, runs.params, runs.tags, runs.error IS NOT NULL FROM runs{clause} "
               f"ORDER BY ({order.sql}) IS NULL, ({order.sql}) {direction}, runs.created DESC, runs.rowid DESC "
               "LIMIT ? OFFSET ?")
        with self.read() as db:
            try:
                (total,) = db.execute(f"SELECT COUNT(*) FROM runs{clause}", args).fetchone()
                rows = db.execute(sql, [*args, *order.args, *order.args, limit, offset]).fetchall()
            except sqlite3.OperationalError as exc:
                raise FilterError(f"the database could not evaluate {filter_text or sort!r}: {exc}") from None
            summaries = self._summaries(db, [r[0] for r in rows])
        now = time.time()
        out = []
        for run_id, name, status, created, ended, params, tags, failed in rows:
            out.append({"id": run_id, "name": name, "status": status, "created": created, "ended": ended,
                        "duration": (ended if ended is not None else now) - created,
                        "params": json.loads(params), "tags": json.loads(tags), "has_error": bool(failed),
                        "metrics": summaries.get(run_id, {})})
        return RunPage(total=total, runs=out)

    @staticmethod
    def _summaries(db: sqlite3.Connection, ids: list[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = db.execute(
                "SELECT run_id, key, count, first_step, last_step, last_value, last_time, min_value, max_value "
                f"FROM metric_summary WHERE run_id IN ({','.join('?' * len(chunk))})", chunk).fetchall()
            for run_id, key, count, first, last, last_value, last_time, low, high in rows:
                # NULL last value: a logged NaN (min and max skip NaN, so NULL there means all were NaN)
                out.setdefault(run_id, {})[key] = {
                    "count": count, "first_step": first, "last_step": last, "last_time": last_time,
                    "last": finite_or_text(math.nan if last_value is None else last_value),
                    "min": finite_or_text(math.nan if low is None else low),
                    "max": finite_or_text(math.nan if high is None else high)}
        return out

    def run(self, run_id: str) -> dict[str, Any]:
        """Everything about one run: params, tags, metric summaries, artifacts, error."""
        with self.read() as db:
            row = db.execute("SELECT id, name, weft_status(status, pid, host), created, ended, params, tags, error, "
                             "pid, host FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise NotFound(f"no run {run_id!r} in {str(self.path)!r}")
            metrics = self._summaries(db, [run_id]).get(run_id, {})
            artifacts = db.execute("SELECT name, path, time FROM artifacts WHERE run_id = ? ORDER BY time, rowid",
                                   (run_id,)).fetchall()
        rid, name, status, created, ended, params, tags, error, pid, host = row
        return {"id": rid, "name": name, "status": status, "created": created, "ended": ended,
                "duration": (ended if ended is not None else time.time()) - created,
                "params": json.loads(params), "tags": json.loads(tags), "error": error, "pid": pid, "host": host,
                "metrics": dict(sorted(metrics.items())),
                "artifacts": [{"name": n, "path": p, "time": t} for n, p, t in artifacts]}

    # -- metric histories --------------------------------------------------------
    def series(self, run_ids: Sequence[str], keys: Sequence[str], *, max_points: int = 1500,
               lo: int | None = None, hi: int | None = None) -> dict[str, Any]:
        """Each (run, key) history, downsampled, and the cursor to poll for newer points."""
        out: list[dict[str, Any]] = []
        with self.read() as db:
            known = {r for (r,) in db.execute(f"SELECT id FROM runs WHERE id IN ({','.join('?' * len(run_ids))})",
                                              list(run_ids))}
            missing = [r for r in run_ids if r not in known]
            if missing:
                raise NotFound(f"no run {missing[0]!r} in {str(self.path)!r}")
            (cursor,) = db.execute("SELECT COALESCE(MAX(rowid), 0) FROM metrics").fetchone()
            for run_id in run_ids:
                for key in keys:
                    s = read_series(db, run_id, key, max_points=max_points, lo=lo, hi=hi)
                    out.append({"run": run_id, "key": key, "points": s.points, "downsampled": s.downsampled,
                                "steps": s.steps.tolist(), "values": _values(s.values), "times": s.times.tolist()})
        return {"cursor": cursor, "series": out}

    def updates(self, since: int, run_ids: Sequence[str], keys: Sequence[str], *, limit: int = 10_000
                ) -> dict[str, Any]:
        """Points logged after cursor ``since`` to these runs (and keys), their statuses, the new cursor."""
        with self.read() as db:
            marks = ",".join("?" * len(run_ids))
            key_clause = f" AND key IN ({','.join('?' * len(keys))})" if keys else ""
            rows = db.execute(f"SELECT rowid, run_id, key, step, value, time FROM metrics WHERE rowid > ? "
                              f"AND run_id IN ({marks}){key_clause} ORDER BY rowid LIMIT ?",
                              [since, *run_ids, *keys, limit + 1]).fetchall() if run_ids else []
            truncated = len(rows) > limit
            rows = rows[:limit]
            (latest,) = db.execute("SELECT COALESCE(MAX(rowid), 0) FROM metrics").fetchone()
            statuses = db.execute(f"SELECT id, weft_status(status, pid, host), ended FROM runs WHERE id IN ({marks})",
                                  list(run_ids)).fetchall() if run_ids else []
            run_count, run_mark = db.execute("SELECT COUNT(*), COALESCE(MAX(rowid), 0) FROM runs").fetchone()
            running = db.execute("SELECT COUNT(*) FROM runs WHERE status = 'running'").fetchone()[0]
        # with a truncated answer the cursor stops at the last point sent, so nothing is skipped
        cursor = rows[-1][0] if truncated else max(latest, since)
        grouped: dict[tuple[str, str], dict[str, list[Any]]] = {}
        for _, run_id, key, step, value, t in rows:
            entry = grouped.setdefault((run_id, key), {"steps": [], "values": [], "times": []})
            entry["steps"].append(step)
            entry["values"].append(finite_or_text(math.nan if value is None else value))
            entry["times"].append(t)
        return {"cursor": cursor, "truncated": truncated,
                "points": [{"run": r, "key": k, **v} for (r, k), v in grouped.items()],
                "runs": [{"id": i, "status": s, "ended": e} for i, s, e in statuses],
                "run_count": run_count, "run_mark": run_mark, "running": running}
