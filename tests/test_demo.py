"""`weft demo --small`: the whole load -> train -> serve path, and resuming from a checkpoint."""

from __future__ import annotations

import contextlib
import io
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

pytest.importorskip("fastapi", reason="the serve extra is not installed here")
pytest.importorskip("PIL", reason="Pillow is not installed here")

from weft._demo import run_demo


def test_demo_trains_serves_and_resumes(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(file=out, width=200)
    first = run_demo(size="small", epochs=2, workdir=tmp_path, console=console)  # as if stopped after 2 epochs
    assert first["resumed_from_epoch"] is None
    assert first["train_images"] == 2 * 480
    assert first["failed"] == 0 and first["requests"] == 120
    assert first["serve_backend"] in ("thread", "process") and first["serve_reason"]

    second = run_demo(size="small", workdir=tmp_path, console=console)  # the default 5 epochs: resumes
    assert second["resumed_from_epoch"] == 2
    assert second["run_id"] == first["run_id"], "the tracker run continues"
    assert second["train_images"] == 3 * 480, "only the remaining epochs are trained"
    assert second["val_acc"] > 0.6, "three shapes on noise are learnable well above chance (1/3)"
    assert abs(second["served_acc"] - second["val_acc"]) < 0.1
    text = out.getvalue()
    for heading in ("1. data", "2. train", "3. serve", "final accuracy", "resuming from checkpoint"):
        assert heading in text, heading
    assert "decode+augment" in text and "backend" in text
    with contextlib.closing(sqlite3.connect(tmp_path / "weft.db")) as db:
        epochs = db.execute("SELECT COUNT(*) FROM metrics WHERE key = 'val_acc'").fetchone()[0]
        runs = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    assert epochs == 5 and runs == 1
    assert len(list((tmp_path / "checkpoints").glob("*.safetensors"))) >= 2

    third = run_demo(size="small", workdir=tmp_path, console=console)  # nothing left to train
    assert third["train_images"] == 0 and "already trained" in out.getvalue()


def test_weft_demo_command(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "weft", "demo", "--small", "--epochs", "1", "--dir",
                             str(tmp_path)], capture_output=True, text=True, timeout=110,
                            env={**os.environ, "COLUMNS": "160"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "final accuracy" in result.stdout and "3. serve" in result.stdout
