"""``weft runs list | show | compare | plot | ui | export``: the tracker from the command line.

rich and matplotlib are imported inside the commands so ``weft --help`` stays fast.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from weft.train._tracker import RunInfo, Tracker

__all__ = ["register", "runs_app"]

DEFAULT_DB = "runs/weft.db"

runs_app = typer.Typer(name="runs", help="List, show, compare, plot, browse and export tracked runs.",
                       no_args_is_help=True)

DbOption = Annotated[str | None, typer.Option("--db", help=f"Tracker database (default: $WEFT_DB or {DEFAULT_DB}).")]


def _db_path(db: str | None) -> str:
    return db or os.environ.get("WEFT_DB") or DEFAULT_DB


def _open(db: str | None) -> Tracker:
    from weft.train._tracker import Tracker

    path = _db_path(db)
    if not Path(path).exists():
        typer.echo(f"weft: no tracker database at {path!r}; pass --db or set WEFT_DB", err=True)
        raise typer.Exit(2)
    return Tracker(path)


def _when(t: float | None) -> str:
    return "-" if t is None else _dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _duration(run: RunInfo) -> str:
    if run.ended is None:
        return "-"
    seconds = run.ended - run.created
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _short(mapping: Any, width: int = 40) -> str:
    text = ", ".join(f"{k}={_num(v)}" for k, v in mapping.items())
    return text if len(text) <= width else text[:width - 1] + "…"


#: Columns a table may use when the output is not a terminal (a pipe, a file, a CI log):
#: rich would otherwise assume 80 and cut every column short.
_UNBOUNDED_WIDTH = 10_000


def _console() -> Any:
    """A rich console as wide as the terminal, or unbounded when output is not one."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=_UNBOUNDED_WIDTH)


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"weft: {exc}", err=True)
    return typer.Exit(1)


@runs_app.command("list")
def list_runs(db: DbOption = None,
              limit: Annotated[int, typer.Option(help="Show at most this many runs.")] = 50,
              as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """List runs, newest first, with their last metric values."""
    from rich.table import Table

    with _open(db) as tracker:
        runs = tracker.runs(limit=limit)
    if as_json:
        typer.echo(json.dumps([{"id": r.id, "name": r.name, "status": r.status, "created": r.created,
                                "ended": r.ended, "params": dict(r.params), "summary": dict(r.summary)}
                               for r in runs], indent=2))
        return
    table = Table(title=f"runs in {_db_path(db)}", header_style="bold")
    for column in ("id", "name", "status", "started", "duration", "params", "last metrics"):
        table.add_column(column, no_wrap=column in ("id", "name", "started"))
    for r in runs:
        table.add_row(r.id, r.name, r.status, _when(r.created), _duration(r), _short(r.params), _short(r.summary))
    _console().print(table)


@runs_app.command()
def show(run: Annotated[str, typer.Argument(help="Run id, id prefix or name.")], db: DbOption = None) -> None:
    """Show one run: params, tags, every metric (count, last, min, max), artifacts."""
    import numpy as np
    from rich.table import Table

    from weft.errors import TrackerError

    console = _console()
    with _open(db) as tracker:
        try:
            info = tracker.run(run)
            series = tracker.metrics(info.id)
        except TrackerError as exc:
            raise _fail(exc) from None
    head = Table(title=f"run {info.name} ({info.id})", show_header=False)
    head.add_column("field")
    head.add_column("value")
    head.add_row("status", info.status)
    head.add_row("started", _when(info.created))
    head.add_row("duration", _duration(info))
    for k, v in info.params.items():
        head.add_row(f"param {k}", _num(v))
    for k, v in info.tags.items():
        head.add_row(f"tag {k}", _num(v))
    for name, path in info.artifacts.items():
        head.add_row(f"artifact {name}", path)
    if info.error:
        head.add_row("error", info.error.rstrip().splitlines()[-1])
    console.print(head)
    if series:
        table = Table(title="metrics", header_style="bold")
        for column in ("metric", "points", "first step", "last step", "last", "min", "max", "nan"):
            table.add_column(column)
        for key, s in series.items():
            finite_or_inf = s.values[~np.isnan(s.values)]
            low, high = (_num(float(finite_or_inf.min())), _num(float(finite_or_inf.max()))) \
                if len(finite_or_inf) else ("nan", "nan")
            table.add_row(key, str(len(s.values)), str(int(s.steps[0])), str(int(s.steps[-1])),
                          _num(float(s.values[-1])), low, high, str(len(s.values) - len(finite_or_inf)))
        console.print(table)


@runs_app.command()
def compare(runs: Annotated[list[str], typer.Argument(help="Two or more runs (id, prefix or name).")],
            db: DbOption = None) -> None:
    """Compare runs side by side: their params and the last value of each metric."""
    from rich.table import Table

    from weft.errors import TrackerError

    with _open(db) as tracker:
        try:
            infos = [tracker.run(r) for r in runs]
        except TrackerError as exc:
            raise _fail(exc) from None
    table = Table(title="runs compared", header_style="bold")
    table.add_column("")
    for info in infos:
        table.add_column(f"{info.name}\n{info.id}")
    for key in sorted({k for i in infos for k in i.params}):
        table.add_row(f"param {key}", *[_num(i.params.get(key, "-")) for i in infos])
    for key in sorted({k for i in infos for k in i.summary}):
        table.add_row(f"{key} (last)", *[_num(i.summary.get(key, "-")) for i in infos])
    table.add_row("status", *[i.status for i in infos])
    table.add_row("duration", *[_duration(i) for i in infos])
    _console().print(table)


@runs_app.command()
def plot(runs: Annotated[list[str], typer.Argument(help="One or more runs (id, prefix or name).")],
         metric: Annotated[str, typer.Option("--metric", "-m", help="Metric to plot against step.")] = "loss",
         output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")] = Path("plot.png"),
         db: DbOption = None) -> None:
    """Plot one metric of one or more runs against step, to a PNG file."""
    from weft.errors import TrackerError

    with _open(db) as tracker:
        try:
            series = [(tracker.run(r), tracker.metric(r, metric)) for r in runs]
        except TrackerError as exc:
            raise _fail(exc) from None
    empty = [info.name for info, s in series if len(s.values) == 0]
    if empty:
        raise _fail(ValueError(f"run(s) {empty} have no metric {metric!r}; see `weft runs show RUN`"))
    write_plot(series, metric, output)
    typer.echo(f"wrote {output}")


def write_plot(series: list[tuple[RunInfo, Any]], metric: str, output: Path) -> None:
    """Draw ``metric`` against step for each (run, series) into a PNG (matplotlib, Agg)."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    try:
        for info, s in series:
            (line,) = ax.plot(s.steps, s.values, label=f"{info.name} ({info.id[:6]})", linewidth=1.5)
            bad = ~np.isfinite(s.values)
            if bad.any():
                # NaN and inf cannot be drawn as values: mark their steps at the top edge instead
                ax.plot(s.steps[bad], np.ones(int(bad.sum())), "x", color=line.get_color(), clip_on=False,
                        transform=ax.get_xaxis_transform(), label=f"{info.name}: nan/inf ({int(bad.sum())})")
        ax.set_xlabel("step")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} by step")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        output.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(output, format="png")
    finally:
        plt.close(fig)


@runs_app.command("ui")
def runs_ui(db: DbOption = None,
            host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 exposes the page to the network.")]
            = "127.0.0.1",
            port: Annotated[int, typer.Option(help="TCP port (0 = any free port).")] = 8080,
            token: Annotated[str | None, typer.Option(envvar="WEFT_RUNS_TOKEN",
                                                      help="Require 'Authorization: Bearer TOKEN' for the API; "
                                                           "the printed URL carries it to the page.")] = None,
            ) -> None:
    """Browse and compare runs in a browser: a local page, live while runs are logging."""
    from weft.errors import WeftError
    from weft.train._runs_ui._server import RunsPageServer

    path = _db_path(db)
    try:
        page = RunsPageServer(path, host=host, port=port, token=token)
    except WeftError as exc:
        typer.echo(f"weft runs ui: {exc}", err=True)
        raise typer.Exit(2) from None

    def announce(url: str) -> None:
        shown = f"{url}/#token={token}" if token else f"{url}/"
        typer.echo(f"weft runs ui: {path} on {shown} (read-only; Ctrl-C stops)")
        sys.stdout.flush()  # a pipe reading the URL gets it now, not at exit

    try:
        page.run(on_ready=announce)
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once it has shut down: a normal stop
        typer.echo("weft runs ui: stopped")
    except WeftError as exc:
        typer.echo(f"weft runs ui: {exc}", err=True)
        raise typer.Exit(2) from None


@runs_app.command("export")
def runs_export(runs: Annotated[list[str], typer.Argument(help="Runs to export (id, id prefix or name).")],
                tensorboard: Annotated[Path | None, typer.Option(
                    "--tensorboard", help="Write TensorBoard event files here, one folder per run.")] = None,
                csv_path: Annotated[Path | None, typer.Option(
                    "--csv", help="Write every point as CSV rows to this file.")] = None,
                json_path: Annotated[Path | None, typer.Option(
                    "--json", help="Write the runs and every point as JSON to this file.")] = None,
                db: DbOption = None) -> None:
    """Export runs: TensorBoard event files (no TensorFlow needed), CSV or JSON."""
    from weft.errors import TrackerError
    from weft.train._export import export_csv, export_json, export_tensorboard

    if tensorboard is None and csv_path is None and json_path is None:
        typer.echo("weft runs export: choose at least one of --tensorboard DIR, --csv FILE, --json FILE", err=True)
        raise typer.Exit(2)
    with _open(db) as tracker:
        try:
            if tensorboard is not None:
                files = export_tensorboard(tracker, runs, tensorboard)
                typer.echo(f"wrote {len(files)} TensorBoard event file(s) under {tensorboard} "
                           f"(tensorboard --logdir {tensorboard})")
            if csv_path is not None:
                typer.echo(f"wrote {export_csv(tracker, runs, csv_path)} rows to {csv_path}")
            if json_path is not None:
                typer.echo(f"wrote {export_json(tracker, runs, json_path)} run(s) to {json_path}")
        except TrackerError as exc:
            raise _fail(exc) from None


def register(app: typer.Typer) -> None:
    """Add ``weft runs`` to the ``weft`` command."""
    app.add_typer(runs_app, name="runs")
