"""`weft demo --small`: the whole load -> train -> serve path, and resuming from a checkpoint."""

from __future__ import annotations

import contextlib
import io
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

pytest.importorskip("fastapi", reason="the serve extra is not installed here")
pytest.importorskip("PIL", reason="Pillow is not installed here")

from weft.demo._run import run_demo

# Three demo runs take ~25 s on an idle 2-core machine; these bounds leave room for a
# machine whose every core also runs another CPU-bound process.
DEMO_COMMAND_SECONDS = 300


@pytest.mark.slow
@pytest.mark.timeout(600)
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


@pytest.mark.slow
@pytest.mark.timeout(DEMO_COMMAND_SECONDS + 60)
def test_weft_demo_command(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "weft", "demo", "--small", "--epochs", "1", "--dir",
                             str(tmp_path)], capture_output=True, text=True, timeout=DEMO_COMMAND_SECONDS,
                            env={**os.environ, "COLUMNS": "160"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "final accuracy" in result.stdout and "3. serve" in result.stdout


def test_weft_help_does_not_load_the_demo() -> None:
    code = ("import sys, importlib, typer; importlib.import_module('weft.demo._cli').register(typer.Typer()); "
            "print(','.join(m for m in ('numpy', 'PIL', 'weft.demo._run') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=DEMO_COMMAND_SECONDS,
                         check=True)
    assert out.stdout.strip() == "", f"registering `weft demo` imported {out.stdout.strip()}"


def test_demo_parts() -> None:
    import numpy as np

    from weft.demo._dataset import CLASSES, SIDE, draw, normalize
    from weft.demo._model import forward, init_params, learning_rate, sgd_step
    from weft.errors import ConfigError

    rng = np.random.default_rng(0)
    images = np.stack([draw(kind, rng) for kind in range(len(CLASSES)) for _ in range(8)])
    assert images.shape == (24, SIDE, SIDE) and images.dtype == np.uint8
    x = normalize(images.astype(np.float32) / 255.0).reshape(len(images), -1)
    assert abs(float(x.mean())) < 0.5 and 0.5 < float(x.std()) < 2.0, "about mean 0, unit spread"
    y = np.repeat(np.arange(len(CLASSES)), 8)
    params = init_params(16)
    velocity = {k: np.zeros_like(v) for k, v in params.items()}
    losses = [sgd_step(params, velocity, x, y, learning_rate(0))[0] for _ in range(30)]
    assert losses[-1] < losses[0], "the step lowers the loss on a fixed batch"
    _, probs = forward(params, x)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert learning_rate(1) < learning_rate(0)
    with pytest.raises(ConfigError, match="size"):
        run_demo(size="huge")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_interrupted_demo_resumes_at_the_next_batch(tmp_path: Path) -> None:
    import numpy as np

    from weft.demo._run import SIZES

    every = SIZES["small"].checkpoint_every
    stop_after = every + 2  # two steps past a mid-epoch checkpoint: those two are trained again
    assert stop_after < 480 // 64, "the stop must fall inside the first epoch"

    def batch_id(x: np.ndarray, y: np.ndarray) -> bytes:
        return x.tobytes() + y.tobytes()

    def recorder(seen: list[tuple[int, bytes]], stop: int | None = None) -> Any:
        def on_step(step: int, x: np.ndarray, y: np.ndarray) -> bool:
            seen.append((step, batch_id(x, y)))
            return stop is not None and len(seen) == stop
        return on_step

    console = Console(file=io.StringIO(), width=200)
    whole: list[tuple[int, bytes]] = []
    run_demo(size="small", epochs=1, workdir=tmp_path, console=console, on_step=recorder(whole))
    assert [s for s, _ in whole] == list(range(8)), "one epoch of 480 images is 8 batches of 64"

    first: list[tuple[int, bytes]] = []
    # the same paths (the augmentation depends on them), the same data, nothing else kept
    stopped = run_demo(size="small", epochs=1, workdir=tmp_path, fresh=True, console=console,
                       on_step=recorder(first, stop=stop_after))
    assert stopped["stopped_at_step"] == stop_after and "served_acc" not in stopped
    assert first == whole[:stop_after]

    rest: list[tuple[int, bytes]] = []
    resumed = run_demo(size="small", epochs=1, workdir=tmp_path, console=console, on_step=recorder(rest))
    assert resumed["resumed_from_epoch"] == 0 and resumed["resumed_from_step"] == every
    assert rest == whole[every:], "the resumed epoch goes on at the batch after the checkpoint, in the same order"
    assert resumed["train_images"] == 480 - every * 64
    assert resumed["run_id"] == stopped["run_id"]
