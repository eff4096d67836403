"""A rich progress bar over a pipeline, ending with the bottleneck verdict."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from weft.data._pipeline import Pipeline

__all__ = ["progress"]

#: Items between refreshes of the rate and hint: a statistics snapshot visits every stage
#: (and asks each executor), too much to do per item of a fast pipeline.
_REFRESH_EVERY = 64
#: Characters of the verdict shown beside the bar (the whole verdict is printed at the end).
_HINT_CHARS = 60


def progress(pipe: Pipeline, *, total: int | None = None, description: str = "weft.data",
             console: Any = None) -> Iterator[Any]:
    """Yield the pipeline's items while a progress bar shows count, rate and the verdict.

    ``for batch in weft.data.progress(pipe): ...``. Breaking out stops the pipeline. The
    bar's total is ``total``, else ``len(pipe)`` where the pipeline knows its length.
    """
    if total is None:
        try:
            total = len(pipe)
        except TypeError:
            total = None  # a stream: the bar counts without a total
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = console or Console(stderr=True)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]:>9}/s"), TimeElapsedColumn(), TextColumn("{task.fields[hint]}")]
    iterator = iter(pipe)
    try:
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task(description, total=total, rate="-", hint="")
            for n, item in enumerate(iterator, 1):
                yield item
                if n % _REFRESH_EVERY == 0 or n == total:
                    s = pipe.statistics()
                    rate = s.stages[-1].items_per_second if s.stages else 0.0
                    bar.update(task, completed=n, rate=f"{rate:,.0f}", hint=s.verdict[:_HINT_CHARS])
                else:
                    bar.update(task, completed=n)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
    console.print(pipe.statistics().verdict)
