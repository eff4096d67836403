"""`weft runs list | show | compare | plot` against a real database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import weft.train as wt
from weft.train._cli import register

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "weft.db"
    tracker = wt.Tracker(path)
    for name, lr in (("small-lr", 0.01), ("big-lr", 0.1)):
        with tracker.start_run(name, params={"lr": lr}) as run:
            for step in range(30):
                run.log({"loss": lr * 10 / (step + 1), "acc": step / 30})
    tracker.close()
    return str(path)


@pytest.fixture
def app() -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """root"""

    register(root)
    return root


def test_list_show_compare(app: typer.Typer, db: str) -> None:
    runner = CliRunner(env={"COLUMNS": "200"})
    out = runner.invoke(app, ["runs", "list", "--db", db])
    assert out.exit_code == 0, out.output
    assert "small-lr" in out.output and "big-lr" in out.output
    out = runner.invoke(app, ["runs", "show", "big-lr", "--db", db])
    assert out.exit_code == 0, out.output
    assert "param lr" in out.output and "loss" in out.output and "30" in out.output
    out = runner.invoke(app, ["runs", "compare", "small-lr", "big-lr", "--db", db])
    assert out.exit_code == 0, out.output
    assert "0.01" in out.output and "0.1" in out.output and "loss (last)" in out.output
    out = runner.invoke(app, ["runs", "list", "--json"], env={"WEFT_DB": db})
    assert out.exit_code == 0 and '"name": "small-lr"' in out.output


def test_list_is_not_cut_to_80_columns_when_piped(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "weft.db"
    name = "resnet50-cosine-warmup-lr3e-4-batch256-seed0-long-sweep-name"
    with wt.Tracker(path) as tracker, tracker.start_run(name, params={"lr": 3e-4}) as run:
        run.log({"validation_top1_accuracy": 0.761, "training_cross_entropy_loss": 0.93})
    out = CliRunner(env={"COLUMNS": None, "LINES": None}).invoke(app, ["runs", "list", "--db", str(path)])
    assert out.exit_code == 0, out.output
    assert name in out.output


def test_plot_writes_a_png(app: typer.Typer, db: str, tmp_path: Path) -> None:
    target = tmp_path / "plots" / "loss.png"
    out = CliRunner().invoke(app, ["runs", "plot", "small-lr", "big-lr", "--metric", "loss", "-o", str(target),
                                   "--db", db])
    assert out.exit_code == 0, out.output
    data = target.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 5_000, "a real plot, not an empty image"
    import struct

    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, height) == (700, 400)


def test_errors_are_clear(app: typer.Typer, db: str, tmp_path: Path) -> None:
    runner = CliRunner(env={"COLUMNS": "200"})
    out = runner.invoke(app, ["runs", "show", "nothing", "--db", db])
    assert out.exit_code == 1 and "no run 'nothing'" in out.output
    out = runner.invoke(app, ["runs", "plot", "big-lr", "--metric", "nope", "-o", str(tmp_path / "x.png"),
                              "--db", db])
    assert out.exit_code == 1 and "no metric 'nope'" in out.output
    out = runner.invoke(app, ["runs", "list", "--db", str(tmp_path / "absent.db")])
    assert out.exit_code == 2 and "no tracker database" in out.output


def test_weft_command_has_runs(db: str) -> None:
    result = subprocess.run([sys.executable, "-m", "weft", "runs", "list", "--db", db], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "small-lr" in result.stdout


def test_show_and_plot_nan_inf_and_the_error(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "weft.db"
    tracker = wt.Tracker(path)
    try:
        with tracker.start_run("diverged") as run:
            run.log({"loss": 1.0})
            run.log({"loss": float("inf")})
            run.log({"loss": float("nan")})
            raise RuntimeError("loss went to nan")
    except RuntimeError:
        pass
    with tracker.start_run("all-nan") as run:
        run.log({"loss": float("nan")})
    tracker.close()
    runner = CliRunner(env={"COLUMNS": "200"})
    out = runner.invoke(app, ["runs", "show", "diverged", "--db", str(path)])
    assert out.exit_code == 0, out.output
    row = next(line for line in out.output.splitlines() if line.strip("│ ").startswith("loss"))
    assert "nan" in row and "inf" in row and "1" in row
    assert "RuntimeError: loss went to nan" in out.output and "failed" in out.output
    out = runner.invoke(app, ["runs", "show", "all-nan", "--db", str(path)])
    assert out.exit_code == 0, out.output
    target = tmp_path / "nan.png"
    out = runner.invoke(app, ["runs", "plot", "diverged", "all-nan", "-o", str(target), "--db", str(path)])
    assert out.exit_code == 0, out.output
    assert target.read_bytes()[:8] == PNG_SIGNATURE


def test_runs_ui_command_serves_until_interrupted(db: str) -> None:
    import signal

    import httpx

    with subprocess.Popen([sys.executable, "-m", "weft", "runs", "ui", "--db", db, "--port", "0", "--token", "t0k"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            import select

            ready, _, _ = select.select([proc.stdout], [], [], 60)
            assert ready, "weft runs ui printed no URL within 60 s"
            line = proc.stdout.readline()  # printed once the page listens
            assert "weft runs ui:" in line and "#token=t0k" in line and "127.0.0.1" in line, line
            url = line.split(" on ")[1].split("/#")[0]
            assert httpx.get(f"{url}/api/runs").status_code == 401
            body = httpx.get(f"{url}/api/runs", headers={"authorization": "Bearer t0k"}).json()
            assert sorted(r["name"] for r in body["runs"]) == ["big-lr", "small-lr"]
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_runs_ui_command_errors(app: typer.Typer, db: str, tmp_path: Path) -> None:
    import socket

    out = CliRunner().invoke(app, ["runs", "ui", "--db", str(tmp_path / "absent.db")])
    assert out.exit_code == 2 and "no tracker database" in out.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        out = CliRunner().invoke(app, ["runs", "ui", "--db", db, "--port", str(port)])
    assert out.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in out.output
    import gc

    gc.collect()  # a database connection left open would warn here (an error under filterwarnings)
