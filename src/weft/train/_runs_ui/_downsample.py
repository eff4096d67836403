"""A metric history reduced to at most ``max_points`` points, extremes kept.

The steps from ``lo`` to ``hi`` are cut into ``max_points // 2`` equal buckets and each
bucket gives its lowest and its highest point (min/max decimation: every spike and
dip survives, which LTTB does not promise). Long histories are read from the
tracker's ``metric_blocks`` (each block already knows its min and max point), so the
rows read stay near ``16 * max_points / 2`` however many points were logged.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass

import numpy as np

from weft.train._tracker_schema import BLOCK_WIDTHS, block_of

__all__ = ["Series", "read_series"]


@dataclass(frozen=True)
class Series:
    steps: np.ndarray    # int64
    values: np.ndarray   # float64, NaN where NaN was logged
    times: np.ndarray    # float64, seconds since the epoch
    points: int          # points logged in the whole history
    downsampled: bool


def _empty(points: int = 0) -> Series:
    return Series(steps=np.zeros(0, np.int64), values=np.zeros(0), times=np.zeros(0), points=points,
                  downsampled=False)


def read_series(db: sqlite3.Connection, run_id: str, key: str, *, max_points: int = 1500,
                lo: int | None = None, hi: int | None = None) -> Series:
    """The history of ``key`` in ``run_id`` between steps ``lo`` and ``hi``, at most ``max_points`` long."""
    row = db.execute("SELECT count, first_step, last_step FROM metric_summary WHERE run_id = ? AND key = ?",
                     (run_id, key)).fetchone()
    if row is None:
        return _empty()
    count, first, last = row
    lo = first if lo is None else max(lo, first)
    hi = last if hi is None else min(hi, last)
    if lo > hi:
        return _empty(count)
    buckets = max(1, max_points // 2)
    span = hi - lo + 1
    whole = lo == first and hi == last
    if (whole and count <= max_points) or span <= max_points:
        steps, values, times = _raw(db, run_id, key, lo, hi)
        if len(steps) <= max_points:
            return Series(steps=steps, values=values, times=times, points=count, downsampled=False)
        return _bucketed(steps, values, times, lo, span / buckets, count)
    ideal = span / buckets
    widths = [w for w in BLOCK_WIDTHS if w <= ideal]
    if not widths:
        steps, values, times = _raw(db, run_id, key, lo, hi)
        return _bucketed(steps, values, times, lo, ideal, count)
    width = widths[-1]
    rows = db.execute(
        "SELECT block, min_step, min_value, min_time, max_step, max_value, max_time FROM metric_blocks "
        "WHERE run_id = ? AND key = ? AND width = ? AND block BETWEEN ? AND ? AND min_step IS NOT NULL",
        (run_id, key, width, block_of(lo, width), block_of(hi, width))).fetchall()
    if not rows:
        return _empty(count)
    data = np.array(rows, dtype=np.float64)
    # a block's points are its min and its max; bucket them by the block's first step
    block_start = data[:, 0] * width
    steps = np.concatenate([data[:, 1], data[:, 4]]).astype(np.int64)
    values = np.concatenate([data[:, 2], data[:, 5]])
    times = np.concatenate([data[:, 3], data[:, 6]])
    keys = np.concatenate([block_start, block_start])
    return _pick(steps, values, times, np.floor((keys - lo) / ideal).astype(np.int64), count)


def _raw(db: sqlite3.Connection, run_id: str, key: str, lo: int, hi: int) -> tuple[np.ndarray, ...]:
    rows = db.execute("SELECT step, value, time FROM metrics WHERE run_id = ? AND key = ? AND step BETWEEN ? AND ? "
                      "ORDER BY step, time", (run_id, key, lo, hi)).fetchall()
    data = np.array(rows, dtype=np.float64).reshape(-1, 3)  # NULL (a logged NaN) becomes NaN
    return data[:, 0].astype(np.int64), data[:, 1], data[:, 2]


def _bucketed(steps: np.ndarray, values: np.ndarray, times: np.ndarray, lo: int, width: float,
              count: int) -> Series:
    return _pick(steps, values, times, np.floor((steps - lo) / width).astype(np.int64), count)


def _pick(steps: np.ndarray, values: np.ndarray, times: np.ndarray, bucket: np.ndarray, count: int) -> Series:
    """The lowest and highest point of each bucket, in step order; NaN-only buckets give nothing."""
    finite_low = np.where(np.isnan(values), math.inf, values)
    finite_high = np.where(np.isnan(values), -math.inf, values)
    by_low = np.lexsort((steps, finite_low, bucket))
    by_high = np.lexsort((steps, -finite_high, bucket))
    firsts = np.flatnonzero(np.r_[True, np.diff(bucket[by_low]) != 0])
    lows = by_low[firsts]
    highs = by_high[np.flatnonzero(np.r_[True, np.diff(bucket[by_high]) != 0])]
    chosen = np.unique(np.concatenate([lows, highs]))
    chosen = chosen[~np.isnan(values[chosen])]
    order = chosen[np.lexsort((times[chosen], steps[chosen]))]
    return Series(steps=steps[order], values=values[order], times=times[order], points=count, downsampled=True)
