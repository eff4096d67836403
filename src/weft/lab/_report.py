"""The lab's written output: a Markdown report and the JSON of every result."""

from __future__ import annotations

import json
from pathlib import Path

from weft.lab._lab import ExperimentResult, LabReport

__all__ = ["markdown", "measured_text", "pivot", "write_json", "write_markdown"]


def pivot(report: LabReport) -> tuple[list[str], list[tuple[str, dict[str, ExperimentResult]]]]:
    """(interpreter labels, rows): one row per experiment, its results keyed by interpreter.
    A result derived from two interpreters ("A vs B") sits in B's column, one row per A."""
    labels = [i.label for i in report.interpreters]
    rows: dict[tuple[str, str], dict[str, ExperimentResult]] = {}
    for r in report.results:
        parts = r.interpreter.split(" vs ")
        column = parts[-1] if parts[-1] in labels or not labels else labels[0]
        if column not in labels:
            labels.append(column)
        rows.setdefault((r.name, parts[0] if len(parts) > 1 else ""), {})[column] = r
    return labels, [(name, cells) for (name, _), cells in rows.items()]


def measured_text(result: ExperimentResult) -> str:
    """The measured ratio with its spread, or why there is none."""
    if result.verdict is not None:
        return result.verdict.describe()
    return result.reason or result.status


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(report: LabReport) -> str:
    """The whole report as Markdown."""
    lines = ["# weft lab report", ""]
    lines.append(f"Mode: `{report.mode}`; {len(report.results)} results in "
                 f"{report.elapsed_seconds:.0f} s. Interpreters:")
    lines.append("")
    for interp in report.interpreters:
        build = "free-threaded" if interp.free_threaded else "GIL"
        lines.append(f"- `{interp.label}` ({build} build) at `{interp.path}` ({interp.found_by})")
    lines += ["", "Ratios are baseline / candidate (time or bytes; above 1 means the candidate "
              "is faster or smaller), with the interquartile spread in brackets. A claim "
              "holds when the whole spread is on its side of the threshold, does not hold "
              "when it is wholly on the other side, and is inconclusive otherwise.", ""]
    labels, rows = pivot(report)
    lines += ["| experiment | expected | " + " | ".join(labels) + " |",
              "|---|---|" + "---|" * len(labels)]
    for name, cells in rows:
        first = next(iter(cells.values()))
        lines.append(f"| `{name}` | {_cell(_expected(first))} | " + " | ".join(
            _cell(_short(cells[label])) if label in cells else "" for label in labels) + " |")
    lines += ["", "## Every result", ""]
    lines += ["| experiment | interpreter | claim | expected | measured | verdict |",
              "|---|---|---|---|---|---|"]
    for r in report.results:
        expected = _expected(r)
        lines.append("| " + " | ".join(_cell(c) for c in (
            f"`{r.name}`", r.interpreter, r.claim.text, expected,
            r.verdict.describe() if r.verdict else "-",
            r.outcome if r.verdict else f"{r.status}: {r.reason}")) + " |")
    failed = [r for r in report.results if r.outcome == "does not hold"]
    lines += ["", "## Claims that did not hold", ""]
    lines += [f"- `{r.name}` on {r.interpreter}: {r.claim.text} Measured "
              f"{r.verdict.describe() if r.verdict else '-'} against {r.claim.expected}."
              for r in failed] or ["None."]
    lines += ["", "## Details", ""]
    for r in report.results:
        lines.append(f"### `{r.name}` on {r.interpreter}")
        lines.append("")
        lines.append(f"Claim: {r.claim.text} Commonly made in: {r.claim.source}.")
        lines.append("")
        if r.summaries:
            lines += ["| variant | median | q1 | q3 | min | max | n |", "|---|---|---|---|---|---|---|"]
            for variant, s in r.summaries.items():
                unit = r.units.get(variant, "s")
                lines.append(f"| {variant} | " + " | ".join(
                    _quantity(v, unit) for v in (s.median, s.q1, s.q3, s.min, s.max)) + f" | {s.n} |")
            lines.append("")
        if r.params:
            lines.append("Parameters: " + ", ".join(f"{k}={v}" for k, v in r.params.items()) + ".")
        for note in r.notes:
            lines.append(f"- {note}")
        if r.reason:
            lines.append(f"- {r.status}: {r.reason}")
        lines.append("")
    return "\n".join(lines)


def _expected(r: ExperimentResult) -> str:
    """The claim's expectation, with the threshold actually used on that machine."""
    if r.verdict is not None and r.verdict.threshold != r.claim.threshold:
        sign = ">=" if r.claim.direction == "at_least" else "<="
        return f"{r.claim.baseline}/{r.claim.candidate} {sign} {r.verdict.threshold:g}x"
    return r.claim.expected


def _short(r: ExperimentResult) -> str:
    prefix = f"vs {r.interpreter.split(' vs ')[0]}: " if " vs " in r.interpreter else ""
    if r.verdict is None:
        return prefix + r.status
    return f"{prefix}{r.verdict.describe()} {r.outcome}"


def _quantity(value: float, unit: str) -> str:
    if unit == "bytes":
        for step, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if value >= step:
                return f"{value / step:.2f} {name}"
        return f"{value:.0f} B"
    for scale, name in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if value >= scale:
            return f"{value / scale:.3g} {name}"
    return f"{value * 1e9:.3g} ns"


def write_markdown(report: LabReport, path: Path) -> Path:
    path.write_text(markdown(report), encoding="utf-8")
    return path


def write_json(report: LabReport, path: Path) -> Path:
    path.write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    return path
