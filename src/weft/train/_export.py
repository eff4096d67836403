"""Runs out of the tracker: TensorBoard event files, CSV, JSON (``weft runs export``)."""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from weft.train._tensorboard import write_scalars
from weft.train._tracker import RunInfo, Tracker

__all__ = ["export_csv", "export_json", "export_tensorboard"]


def _safe(name: str) -> str:
    return re.sub(r"[^\w.\-]+", "_", name).strip("._") or "run"


def _json_number(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def export_tensorboard(tracker: Tracker, runs: Sequence[str], directory: str | os.PathLike[str]) -> list[Path]:
    """One TensorBoard run folder per run (``NAME_ID``) under ``directory``; returns the event files."""
    written = []
    for ref in runs:
        info = tracker.run(ref)
        points: list[tuple[str, int, float, float]] = []
        for key, series in tracker.metrics(info.id).items():
            points.extend(zip([key] * len(series.steps), series.steps.tolist(), series.values.tolist(),
                              series.times.tolist(), strict=True))
        points.sort(key=lambda p: (p[1], p[3]))
        folder = Path(directory) / f"{_safe(info.name)}_{info.id}"
        written.append(write_scalars(folder, points, start_time=info.created))
    return written


def _infos(tracker: Tracker, runs: Sequence[str]) -> list[RunInfo]:
    return [tracker.run(ref) for ref in runs]


def export_csv(tracker: Tracker, runs: Sequence[str], path: str | os.PathLike[str]) -> int:
    """Every point of these runs as CSV rows (run_id, run_name, metric, step, value, wall_time); returns rows."""
    rows = 0
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["run_id", "run_name", "metric", "step", "value", "wall_time"])
        for info in _infos(tracker, runs):
            for key, series in tracker.metrics(info.id).items():
                for step, value, t in zip(series.steps.tolist(), series.values.tolist(), series.times.tolist(),
                                          strict=True):
                    out.writerow([info.id, info.name, key, step, repr(value), repr(t)])
                    rows += 1
    return rows


def export_json(tracker: Tracker, runs: Sequence[str], path: str | os.PathLike[str]) -> int:
    """These runs with their params, tags, artifacts, error and every metric as JSON; returns runs written.

    NaN and infinities are written as the strings "NaN", "Infinity", "-Infinity" (JSON has no such numbers).
    """
    out: list[dict[str, Any]] = []
    for info in _infos(tracker, runs):
        metrics = {key: {"steps": s.steps.tolist(), "values": [_json_number(v) for v in s.values.tolist()],
                         "times": s.times.tolist()} for key, s in tracker.metrics(info.id).items()}
        out.append({"id": info.id, "name": info.name, "status": info.status, "created": info.created,
                    "ended": info.ended, "params": dict(info.params), "tags": dict(info.tags),
                    "artifacts": dict(info.artifacts), "error": info.error, "metrics": metrics})
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"runs": out}, indent=1, allow_nan=False))
    return len(out)
