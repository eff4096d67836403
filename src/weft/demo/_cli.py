"""``weft demo``: the command. The demo itself is imported when the command runs, so
``weft --help`` does not load NumPy or Pillow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``weft demo`` to the ``weft`` command."""

    @app.command()
    def demo(
        small: Annotated[bool, typer.Option("--small", help="A tiny dataset and 5 epochs (seconds, for CI).")] = False,
        size: Annotated[str, typer.Option(help="Dataset size: 'small' or 'default'.")] = "default",
        epochs: Annotated[int | None, typer.Option(help="Train up to this many epochs (resumes if more).")] = None,
        directory: Annotated[Path, typer.Option("--dir", help="Work directory (data, checkpoints, runs).")] = Path(
            "runs/demo"),
        fresh: Annotated[bool, typer.Option(help="Delete the work directory first.")] = False,
    ) -> None:
        """Load, train and serve a small image classifier end to end (offline, CPU only)."""
        from weft.demo._run import run_demo

        run_demo(size="small" if small else size, epochs=epochs, workdir=directory, fresh=fresh)
