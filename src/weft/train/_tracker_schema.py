"""The tracker's SQLite schema, its migrations, and the per-point bookkeeping rows.

Besides the raw ``metrics`` rows, every logged point updates two small tables in the
same transaction, so that reading never has to scan a long history:

- ``metric_summary``: one row per (run, metric) with its count, first and last step,
  last value and time, min and max. Run lists sort and filter by metric values with
  one primary-key lookup per run.
- ``metric_blocks``: for each (run, metric), the points grouped into aligned blocks of
  steps at a few widths (16, 256, 4096, 65536 steps), each block keeping its min and
  max point. A history of a million points is drawn from at most ~12,000 block rows
  with its extremes kept, instead of from a million raw rows.

NaN is stored as NULL in ``value`` (SQLite's REAL cannot hold NaN; it would turn it into
NULL anyway); +/-inf are stored as they are. Min and max ignore NaN, as ``np.nanmin``.

``PRAGMA user_version`` is the schema version. Version 0 (weft before these tables)
is migrated in place, inside one write transaction, by the first writer that opens it.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Sequence

__all__ = ["BLOCK_WIDTHS", "SCHEMA_VERSION", "block_of", "ensure_schema", "point_rows"]

SCHEMA_VERSION = 2

# Aligned block widths, in steps. A chart of ~750 min/max buckets reads at most 16 blocks
# per bucket, so at most ~12,000 rows, whatever the length of the history.
BLOCK_WIDTHS = (16, 256, 4096, 65536)

_TABLES = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL,
    created REAL NOT NULL, ended REAL, params TEXT NOT NULL DEFAULT '{}', tags TEXT NOT NULL DEFAULT '{}',
    error TEXT, pid INTEGER, host TEXT);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(id), key TEXT NOT NULL, step INTEGER NOT NULL,
    value REAL, time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id TEXT NOT NULL REFERENCES runs(id), name TEXT NOT NULL, path TEXT NOT NULL, time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS metric_summary (
    run_id TEXT NOT NULL, key TEXT NOT NULL, count INTEGER NOT NULL,
    first_step INTEGER NOT NULL, last_step INTEGER NOT NULL, last_value REAL, last_time REAL NOT NULL,
    min_value REAL, max_value REAL, PRIMARY KEY (run_id, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS metric_blocks (
    run_id TEXT NOT NULL, key TEXT NOT NULL, width INTEGER NOT NULL, block INTEGER NOT NULL,
    count INTEGER NOT NULL,
    min_step INTEGER, min_value REAL, min_time REAL,
    max_step INTEGER, max_value REAL, max_time REAL,
    PRIMARY KEY (run_id, key, width, block)) WITHOUT ROWID;
"""

_INDEXES = """
CREATE INDEX IF NOT EXISTS metrics_by_run ON metrics(run_id, key, step);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs(created);
CREATE INDEX IF NOT EXISTS artifacts_by_run ON artifacts(run_id);
CREATE INDEX IF NOT EXISTS summary_by_key ON metric_summary(key, last_value);
"""

# One upsert per point: SQLite evaluates the SET expressions against the old row, so
# each CASE sees the values from before this point.
SUMMARY_UPSERT = """
INSERT INTO metric_summary (run_id, key, count, first_step, last_step, last_value, last_time, min_value, max_value)
VALUES (?1, ?2, 1, ?3, ?3, ?4, ?5, ?4, ?4)
ON CONFLICT (run_id, key) DO UPDATE SET
    count = count + 1,
    first_step = MIN(first_step, excluded.first_step),
    last_value = CASE WHEN excluded.last_step >= last_step THEN excluded.last_value ELSE last_value END,
    last_time = CASE WHEN excluded.last_step >= last_step THEN excluded.last_time ELSE last_time END,
    last_step = MAX(last_step, excluded.last_step),
    min_value = CASE WHEN excluded.min_value IS NULL THEN min_value WHEN min_value IS NULL THEN excluded.min_value
                     ELSE MIN(min_value, excluded.min_value) END,
    max_value = CASE WHEN excluded.max_value IS NULL THEN max_value WHEN max_value IS NULL THEN excluded.max_value
                     ELSE MAX(max_value, excluded.max_value) END
"""

BLOCK_UPSERT = """
INSERT INTO metric_blocks (run_id, key, width, block, count, min_step, min_value, min_time,
                           max_step, max_value, max_time)
VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?7, ?5, ?6, ?7)
ON CONFLICT (run_id, key, width, block) DO UPDATE SET
    count = count + 1,
    min_step = CASE WHEN excluded.min_value < min_value OR (min_value IS NULL AND excluded.min_value IS NOT NULL)
                    THEN excluded.min_step ELSE min_step END,
    min_time = CASE WHEN excluded.min_value < min_value OR (min_value IS NULL AND excluded.min_value IS NOT NULL)
                    THEN excluded.min_time ELSE min_time END,
    min_value = CASE WHEN excluded.min_value < min_value OR (min_value IS NULL AND excluded.min_value IS NOT NULL)
                     THEN excluded.min_value ELSE min_value END,
    max_step = CASE WHEN excluded.max_value > max_value OR (max_value IS NULL AND excluded.max_value IS NOT NULL)
                    THEN excluded.max_step ELSE max_step END,
    max_time = CASE WHEN excluded.max_value > max_value OR (max_value IS NULL AND excluded.max_value IS NOT NULL)
                    THEN excluded.max_time ELSE max_time END,
    max_value = CASE WHEN excluded.max_value > max_value OR (max_value IS NULL AND excluded.max_value IS NOT NULL)
                     THEN excluded.max_value ELSE max_value END
"""


def block_of(step: int, width: int) -> int:
    """The block holding ``step``: truncating division, as SQLite's integer ``/`` does."""
    return step // width if step >= 0 else -((-step) // width)


def stored(value: float) -> float | None:
    """The value as stored: NaN becomes NULL."""
    return None if math.isnan(value) else value


def point_rows(run_id: str, points: Iterable[tuple[str, int, float, float]]
               ) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Rows for ``metrics``, ``metric_summary`` and ``metric_blocks`` from (key, step, value, time)."""
    raw: list[tuple[object, ...]] = []
    summary: list[tuple[object, ...]] = []
    blocks: list[tuple[object, ...]] = []
    for key, step, value, t in points:
        v = stored(value)
        raw.append((run_id, key, step, v, t))
        summary.append((run_id, key, step, v, t))
        blocks.extend((run_id, key, width, block_of(step, width), step, v, t) for width in BLOCK_WIDTHS)
    return raw, summary, blocks


def write_points(db: sqlite3.Connection, run_id: str, points: Sequence[tuple[str, int, float, float]]) -> int:
    """Insert points and update their summary and block rows; returns the points written."""
    raw, summary, blocks = point_rows(run_id, points)
    db.executemany("INSERT INTO metrics (run_id, key, step, value, time) VALUES (?, ?, ?, ?, ?)", raw)
    db.executemany(SUMMARY_UPSERT, summary)
    db.executemany(BLOCK_UPSERT, blocks)
    return len(raw)


def _execute_all(db: sqlite3.Connection, script: str) -> None:
    # statement by statement: executescript() would commit the open transaction
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _columns(db: sqlite3.Connection, table: str) -> dict[str, tuple[object, ...]]:
    return {row[1]: row for row in db.execute(f"PRAGMA table_info({table})")}


def ensure_schema(db: sqlite3.Connection) -> None:
    """Create or migrate the schema; call inside a write transaction."""
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version >= SCHEMA_VERSION:
        return
    had_runs = bool(_columns(db, "runs"))
    _execute_all(db, _TABLES)
    if had_runs:
        _migrate_from_v0(db)
    _execute_all(db, _INDEXES)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _migrate_from_v0(db: sqlite3.Connection) -> None:
    runs = _columns(db, "runs")
    for column, kind in (("error", "TEXT"), ("pid", "INTEGER"), ("host", "TEXT")):
        if column not in runs:
            db.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
    if _columns(db, "metrics")["value"][3]:  # value REAL NOT NULL: NaN could not be stored
        db.execute("DROP INDEX IF EXISTS metrics_by_run")
        db.execute("ALTER TABLE metrics RENAME TO metrics_v0")
        db.execute("CREATE TABLE metrics (run_id TEXT NOT NULL REFERENCES runs(id), key TEXT NOT NULL, "
                   "step INTEGER NOT NULL, value REAL, time REAL NOT NULL)")
        db.execute("INSERT INTO metrics (rowid, run_id, key, step, value, time) "
                   "SELECT rowid, run_id, key, step, value, time FROM metrics_v0")
        db.execute("DROP TABLE metrics_v0")
    db.execute("DELETE FROM metric_summary")
    db.execute("DELETE FROM metric_blocks")
    db.execute(
        "INSERT INTO metric_summary (run_id, key, count, first_step, last_step, last_value, last_time, "
        "min_value, max_value) "
        "SELECT a.run_id, a.key, a.n, a.first_step, a.last_step, l.value, l.time, a.lo, a.hi FROM "
        "(SELECT run_id, key, COUNT(*) AS n, MIN(step) AS first_step, MAX(step) AS last_step, MIN(value) AS lo, "
        " MAX(value) AS hi FROM metrics GROUP BY run_id, key) AS a JOIN "
        "(SELECT run_id, key, value, time FROM (SELECT run_id, key, value, time, ROW_NUMBER() OVER "
        " (PARTITION BY run_id, key ORDER BY step DESC, time DESC, rowid DESC) AS rn FROM metrics) WHERE rn = 1) AS l "
        "ON a.run_id = l.run_id AND a.key = l.key")
    for width in BLOCK_WIDTHS:
        # SQLite takes the other columns of a MIN()/MAX() aggregate from the row holding the extreme.
        # For negative steps '/' truncates, as block_of() does.
        db.execute(
            "INSERT INTO metric_blocks (run_id, key, width, block, count, min_step, min_value, min_time, "
            "max_step, max_value, max_time) "
            "SELECT c.run_id, c.key, ?1, c.b, c.n, lo.step, lo.v, lo.time, hi.step, hi.v, hi.time FROM "
            "(SELECT run_id, key, step / ?1 AS b, COUNT(*) AS n FROM metrics GROUP BY run_id, key, b) AS c "
            "LEFT JOIN (SELECT run_id, key, step / ?1 AS b, MIN(value) AS v, step, time FROM metrics "
            " WHERE value IS NOT NULL GROUP BY run_id, key, b) AS lo "
            " ON lo.run_id = c.run_id AND lo.key = c.key AND lo.b = c.b "
            "LEFT JOIN (SELECT run_id, key, step / ?1 AS b, MAX(value) AS v, step, time FROM metrics "
            " WHERE value IS NOT NULL GROUP BY run_id, key, b) AS hi "
            " ON hi.run_id = c.run_id AND hi.key = c.key AND hi.b = c.b", (width,))
