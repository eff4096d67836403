"""``weft lab``: measure common Python performance claims on this machine's interpreters."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from weft.lab._context import Mode
    from weft.lab._interpreters import Interpreter
    from weft.lab._lab import ExperimentResult, LabConfig, LabReport

__all__ = ["register"]

_STYLE = {"holds": "green", "does not hold": "red", "inconclusive": "yellow",
          "skipped": "dim", "error": "bold red"}


def lab(
    python: Annotated[list[str] | None, typer.Option(
        "--python", help="Interpreter to measure (repeatable). Default: this one plus a "
                         "free-threaded one (WEFT_FT_PYTHON, python3.13t/3.14t on PATH, "
                         "../shared/tools/ft-python).")] = None,
    only: Annotated[list[str] | None, typer.Option(
        "--only", help="Run only this experiment (repeatable), plus the experiments it "
                        "combines (said when it starts); see --list.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Smaller sizes and fewer repeats "
                                        "(about a minute per interpreter).")] = False,
    smoke: Annotated[bool, typer.Option("--smoke", help="Tiny sizes for testing the lab "
                                        "itself; the verdicts mean little.")] = False,
    out: Annotated[Path, typer.Option("--out", help="Directory for report.md, results.json "
                                      "and one PNG per group.")] = Path("lab-results"),
    list_: Annotated[bool, typer.Option("--list", help="List the experiments and exit.")] = False,
) -> None:
    """Measure common Python performance claims on your machine and say which hold."""
    from rich.console import Console
    from rich.markup import escape

    from weft.errors import ConfigError
    from weft.lab._lab import LabConfig
    from weft.lab._registry import available_experiments, claim_of

    console = Console()
    if list_:
        for name in available_experiments():
            console.print(f"[bold]{name}[/] ({claim_of(name).group}): {escape(claim_of(name).text)}")
        return
    if quick and smoke:
        raise typer.BadParameter("choose one of --quick and --smoke")
    mode: Mode = "smoke" if smoke else "quick" if quick else "full"
    try:
        config = LabConfig(pythons=tuple(python or ()), only=tuple(only or ()), mode=mode)
        report = _run(console, config)
    except ConfigError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    console.print(_table(report))
    for line in _not_measured(report):
        console.print(line, highlight=False)
    paths = _write(report, out)
    console.print("wrote " + ", ".join(str(p) for p in paths))
    errors = [r for r in report.results if r.status == "error"]
    if errors:
        console.print(f"[bold red]{len(errors)} experiment(s) failed to run:[/] "
                      + ", ".join(f"{r.name} on {r.interpreter}" for r in errors))
        raise typer.Exit(1)


def _run(console: Console, config: LabConfig) -> LabReport:
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from weft.lab._interpreters import discover
    from weft.lab._lab import added_by_only, plan, run_lab

    measured, derived = plan(config.only)
    added = added_by_only(config.only)
    if added:
        console.print(escape(added), highlight=False)
    interpreters = discover(config.pythons)
    for interp in interpreters:
        console.print(f"interpreter {interp.label} at {interp.path} ({interp.found_by})")
    total = len(interpreters) * len(measured) + len(derived)
    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("weft lab", total=total)

        def progress(name: str, interp: Interpreter | None, result: ExperimentResult | None) -> None:
            if result is None:
                bar.update(task, description=f"{name} on {interp.label if interp else 'combined'}")
                return
            bar.advance(task)
            style = _STYLE.get(result.outcome, "")
            detail = result.verdict.describe() if result.verdict else result.reason
            bar.console.print(f"  {name:<18} {escape(result.interpreter):<16} "
                              f"[{style}]{result.outcome}[/] {escape(detail)}", highlight=False)

        return run_lab(config, progress=progress, interpreters=interpreters)


def _table(report: LabReport) -> Table:
    """One row per experiment, one column per interpreter: the ratio and the verdict."""
    from rich.markup import escape
    from rich.table import Table

    from weft.lab._report import pivot

    table = Table(title=f"weft lab ({report.mode}, {report.elapsed_seconds:.0f} s): "
                        "baseline/candidate, median (interquartile spread)",
                  header_style="bold")
    table.add_column("experiment", no_wrap=True)
    table.add_column("expected")
    labels, rows = pivot(report)
    for label in labels:
        table.add_column(label)
    for name, cells in rows:
        rendered = []
        for label in labels:
            r = cells.get(label)
            if r is None:
                rendered.append("")
                continue
            style = _STYLE.get(r.outcome, "")
            prefix = f"vs {escape(r.interpreter.split(' vs ')[0])}: " if " vs " in r.interpreter else ""
            if r.verdict is None:
                rendered.append(f"{prefix}[{style}]{r.status}[/]")
                continue
            cell = f"{prefix}{r.verdict.describe()} [{style}]{r.outcome}[/]"
            if r.verdict.threshold != r.claim.threshold:
                cell += f" (threshold {r.verdict.threshold:g}x)"
            rendered.append(cell)
        first = next(iter(cells.values()))
        table.add_row(name, escape(first.claim.expected), *rendered)
    return table


def _not_measured(report: LabReport) -> list[str]:
    from rich.markup import escape

    return [f"  [dim]{r.status}[/] {r.name} on {escape(r.interpreter)}: {escape(r.reason)}"
            for r in report.results if r.verdict is None]


def _write(report: LabReport, out: Path) -> list[Path]:
    from weft.lab._chart import write_charts
    from weft.lab._report import write_json, write_markdown

    out.mkdir(parents=True, exist_ok=True)
    paths = [write_markdown(report, out / "report.md"), write_json(report, out / "results.json")]
    return paths + write_charts(report, out)


def register(app: typer.Typer) -> None:
    app.command("lab")(lab)
