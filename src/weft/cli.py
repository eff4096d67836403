"""The ``weft`` command. Each area adds its sub-commands through a ``register(app)``
function in its own ``_cli`` module, which imports heavy dependencies only inside
the commands, so ``weft --help`` stays fast."""

from __future__ import annotations

import importlib
import json
from typing import Annotated

import typer

from weft import runtime
from weft.exec._policy import describe_rule

app = typer.Typer(name="weft", help="Make Python AI workloads fast with or without the GIL.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.callback()
def _root() -> None:
    """Make Python AI workloads fast with or without the GIL."""


#: How ``weft doctor`` names each kind of work in its backend table.
_WORKLOAD_WORDS = {"cpu": "CPU-bound Python", "native": "native code releasing the GIL", "io": "blocking I/O"}

#: Modules whose ``register(app)`` adds sub-commands.
_AREAS: tuple[str, ...] = ("weft.train._cli", "weft.serve._cli", "weft.lab._cli", "weft.demo._cli")


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the facts as JSON.")] = False,
    check_imports: Annotated[bool, typer.Option(help="On a free-threaded build, check which import re-enables the GIL.")] = True,
    check_clusters: Annotated[bool, typer.Option(help="Report the Ray and Dask clusters this machine points at.")] = True,
) -> None:
    """State the facts about this interpreter and the backends weft would choose."""
    facts = runtime.facts(check_imports=check_imports, check_clusters=check_clusters)
    if as_json:
        typer.echo(json.dumps(facts.to_dict(), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="weft doctor", show_header=True, header_style="bold")
    table.add_column("fact")
    table.add_column("value")
    table.add_row("python", f"{facts.python} ({facts.implementation} {facts.version})")
    table.add_row("free-threaded build", _yes(facts.free_threaded_build))
    table.add_row("GIL enabled now", _yes(facts.gil_enabled))
    limit = "none" if facts.cgroup_cpu_limit is None else f"{facts.cgroup_cpu_limit:g} CPUs"
    table.add_row("usable cores", f"{facts.usable_cores} (os.cpu_count()={facts.os_cpu_count}, cgroup quota: {limit})")
    if facts.gil_check is not None:
        check = facts.gil_check
        verdict = ("no: the GIL stays off" if not check.gil_enabled_after
                   else f"yes, by {check.reenabled_by or 'an earlier import or PYTHON_GIL=1'}")
        table.add_row("imports re-enable the GIL", verdict)
        for name, error in check.failed_imports.items():
            table.add_row(f"  could not import {name}", error)
    elif facts.free_threaded_build:
        table.add_row("imports re-enable the GIL", "not checked")
    else:
        table.add_row("imports re-enable the GIL", "n/a (the GIL is always on in this build)")
    console.print(table)
    backends = Table(title="backend weft chooses", show_header=True, header_style="bold")
    backends.add_column("work")
    backends.add_column("backend")
    backends.add_column("why")
    for choice in facts.backends:
        workload = choice.workload or "any"
        backends.add_row(_WORKLOAD_WORDS.get(workload, workload), choice.backend, choice.reason)
    console.print(backends)
    if facts.clusters:
        from weft.exec._cluster_info import cluster_table

        console.print(cluster_table(facts.clusters))
    console.print(describe_rule())


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _register_areas() -> None:
    for module in _AREAS:
        importlib.import_module(module).register(app)


def main() -> None:
    _register_areas()
    app()


__all__ = ["app", "main"]
