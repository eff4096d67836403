"""Runs the experiments: each in a fresh subprocess of each interpreter, then the derived
(cross-interpreter) ones, then the verdicts."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import weft
from weft.errors import ConfigError, LabError
from weft.lab._claim import Claim
from weft.lab._context import Mode
from weft.lab._interpreters import Interpreter, discover
from weft.lab._registry import available_experiments, load
from weft.lab._verdict import Summary, Verdict, judge, summarize

__all__ = ["ExperimentResult", "LabConfig", "LabReport", "run_lab"]

_log = logging.getLogger(__name__)
Status = Literal["ok", "skipped", "error"]
#: Seconds one experiment may take in one interpreter before it is reported as an error.
_TIMEOUTS: dict[str, float] = {"smoke": 120.0, "quick": 180.0, "full": 1200.0}


@dataclass(frozen=True, kw_only=True)
class LabConfig:
    """What to run: interpreter paths (empty: this one plus a free-threaded one if found),
    experiment names (empty: all) and the size mode (``smoke`` < ``quick`` < ``full``)."""

    pythons: tuple[str, ...] = ()
    only: tuple[str, ...] = ()
    mode: Mode = "full"

    def __post_init__(self) -> None:
        if self.mode not in _TIMEOUTS:
            raise ConfigError(f"mode must be one of {sorted(_TIMEOUTS)}, got {self.mode!r}")
        known = available_experiments()
        unknown = [n for n in self.only if n not in known]
        if unknown:
            raise ConfigError(f"unknown lab experiment(s) {unknown}; known: {', '.join(known)}")


@dataclass(frozen=True, kw_only=True)
class ExperimentResult:
    """One claim measured on one interpreter (or, for derived claims, a pair of them)."""

    claim: Claim
    interpreter: str
    status: Status
    reason: str = ""
    verdict: Verdict | None = None
    summaries: dict[str, Summary] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return self.claim.name

    @property
    def outcome(self) -> str:
        """The verdict, or ``skipped`` / ``error``."""
        return self.verdict.kind if self.verdict is not None else self.status

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "group": self.claim.group, "claim": asdict(self.claim),
            "expected": self.claim.expected, "interpreter": self.interpreter,
            "status": self.status, "reason": self.reason, "outcome": self.outcome,
            "verdict": None if self.verdict is None else asdict(self.verdict),
            "measured": None if self.verdict is None else self.verdict.describe(),
            "summaries": {k: asdict(v) for k, v in self.summaries.items()},
            "units": self.units, "params": self.params, "notes": list(self.notes),
            "seconds": self.seconds,
        }


@dataclass(frozen=True, kw_only=True)
class LabReport:
    """Every result of one lab run, with the interpreters it ran on."""

    mode: Mode
    interpreters: tuple[Interpreter, ...]
    results: tuple[ExperimentResult, ...]
    elapsed_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "elapsed_seconds": self.elapsed_seconds,
                "interpreters": [dict(asdict(i), label=i.label) for i in self.interpreters],
                "results": [r.to_dict() for r in self.results]}


def _source_root() -> str:
    """The directory holding the ``weft`` package, put on the child's PYTHONPATH so the
    interpreter under test needs no weft of its own."""
    return str(Path(weft.__file__).resolve().parent.parent)


def run_raw(interpreter: str, name: str, mode: Mode, timeout: float | None = None) -> dict[str, Any]:
    """Run experiment ``name`` in a fresh subprocess of ``interpreter``; its raw JSON result."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_source_root(), env.get("PYTHONPATH")) if p)
    limit = _TIMEOUTS[mode] if timeout is None else timeout
    with tempfile.TemporaryDirectory(prefix="weft-lab-") as tmp:
        result_file = os.path.join(tmp, "result.json")
        command = [interpreter, "-m", "weft.lab._runner", name, "--mode", mode,
                   "--result", result_file]
        started = time.perf_counter()
        try:
            proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            return _failed(name, mode, f"timed out after {limit:.0f} s", time.perf_counter() - started)
        if proc.returncode != 0 or not os.path.exists(result_file):
            tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
            return _failed(name, mode, f"exit code {proc.returncode}: {tail}",
                           time.perf_counter() - started)
        with open(result_file, encoding="utf-8") as f:
            raw: dict[str, Any] = json.load(f)
        if raw["status"] == "error" and proc.stderr.strip():
            _log.warning("%s on %s failed:\n%s", name, interpreter, proc.stderr.strip())
        return raw


def _failed(name: str, mode: str, reason: str, seconds: float) -> dict[str, Any]:
    return {"name": name, "mode": mode, "status": "error", "reason": reason, "samples": {},
            "units": {}, "params": {}, "notes": [], "seconds": seconds, "threshold": None}


def evaluate(claim: Claim, raw: dict[str, Any], interpreter: str) -> ExperimentResult:
    """Turn a raw result into an :class:`ExperimentResult` with its verdict."""
    samples: dict[str, list[float]] = raw.get("samples", {})
    summaries = {k: summarize(v) for k, v in samples.items() if v}
    verdict = None
    status: Status = raw["status"]
    if status == "ok":
        missing = [v for v in (claim.baseline, claim.candidate) if not samples.get(v)]
        if missing:
            raise LabError(f"experiment {claim.name!r} reported status 'ok' without samples for {missing}: "
                           "its measure() or combine() must record both variants, or report a skip")
        threshold = raw.get("threshold") or claim.threshold
        verdict = judge(samples[claim.baseline], samples[claim.candidate],
                        threshold=threshold, direction=claim.direction)
    return ExperimentResult(
        claim=claim, interpreter=interpreter, status=status, reason=raw.get("reason", ""),
        verdict=verdict, summaries=summaries, units=raw.get("units", {}),
        params=raw.get("params", {}), notes=tuple(raw.get("notes", ())),
        seconds=float(raw.get("seconds", 0.0)))


def plan(only: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """(measured, derived) experiment names for ``only`` (empty: all), adding what the
    derived ones need."""
    names = list(only) or available_experiments()
    derived = [n for n in names if hasattr(load(n), "combine")]
    measured = [n for n in names if n not in derived]
    for n in derived:
        for need in getattr(load(n), "REQUIRES", ()):
            if need not in measured:
                measured.append(need)
    return measured, derived


Progress = Callable[[str, Interpreter | None, "ExperimentResult | None"], None]


def run_lab(config: LabConfig, *, progress: Progress | None = None, cwd: Path | None = None,
            interpreters: Sequence[Interpreter] | None = None) -> LabReport:
    """Run the configured experiments. ``progress(name, interpreter, result)`` is called
    before each run (result None) and after it. ``interpreters`` overrides discovery."""
    started = time.perf_counter()
    if interpreters is None:
        interpreters = discover(config.pythons, cwd=cwd)
    measured, derived = plan(config.only)
    results: list[ExperimentResult] = []
    raws: list[dict[str, Any]] = []
    for interp in interpreters:
        for name in measured:
            if progress:
                progress(name, interp, None)
            raw = run_raw(interp.path, name, config.mode)
            raw.setdefault("interpreter", {"label": interp.label, "version": interp.version,
                                           "free_threaded": interp.free_threaded})
            raws.append(raw)
            result = evaluate(load(name).CLAIM, raw, interp.label)
            results.append(result)
            if progress:
                progress(name, interp, result)
    for name in derived:
        module = load(name)
        for raw in module.combine(raws):
            result = evaluate(module.CLAIM, raw, " vs ".join(raw.get("interpreters", [])) or "-")
            results.append(result)
            if progress:
                progress(name, None, result)
    return LabReport(mode=config.mode, interpreters=tuple(interpreters), results=tuple(results),
                     elapsed_seconds=time.perf_counter() - started)
