"""Kill -9 the training examples at five points (mid-epoch, mid-checkpoint-write, between
a checkpoint file and its manifest), resume each time: the final state is bit-identical
to an uninterrupted run's, and the tracker holds one run whose loss curve has every step
once, with the uninterrupted run's values."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import weft.train as wt

ROOT = Path(__file__).resolve().parents[2]
PAUSING = Path(__file__).with_name("pausing.py")
STEPS, EVERY = 60, 8
KILLS = 5
#: Generous for one run of 60 small steps (about a second) on a machine whose every
#: core runs another CPU-bound process.
RUN_TIMEOUT = 100


def kill_points(rng: random.Random) -> list[str]:
    """Five stop points, one in each fifth of the run, in a random order of kinds: three
    in the training loop (off checkpoint steps), one in a checkpoint's write, one between
    a checkpoint's file and its manifest entry."""
    kinds = ["step", "step", "step", "write", "manifest"]
    rng.shuffle(kinds)
    width = STEPS // KILLS
    points = []
    for i, kind in enumerate(kinds):
        window = range(max(1, i * width), (i + 1) * width)
        on_checkpoint = [s for s in window if s % EVERY == 0]
        choices = on_checkpoint if kind in ("write", "manifest") else [s for s in window if s % EVERY]
        points.append(f"{kind}:{rng.choice(choices)}")
    return points


def run(example: Path, directory: Path, stop: str = "none") -> None:
    """Run the example to its end (``stop="none"``), or until it pauses at ``stop``, then SIGKILL it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.Popen(
            [sys.executable, str(PAUSING), stop, str(write_end), str(example), "--dir", str(directory),
             "--steps", str(STEPS), "--every", str(EVERY), "--resume"],
            pass_fds=(write_end,), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    finally:
        os.close(write_end)
    try:
        with os.fdopen(read_end) as paused:
            line = paused.readline()  # the pause, or EOF when the process ends without one
        if stop == "none":
            out, err = proc.communicate(timeout=RUN_TIMEOUT)
            assert proc.returncode == 0, err[-3000:]
            assert f"step {STEPS}:" in out
            return
        if line != f"paused {stop}\n":
            out, err = proc.communicate(timeout=RUN_TIMEOUT)
            pytest.fail(f"{example.name} ended (code {proc.returncode}) before {stop}: {err[-3000:]}")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=RUN_TIMEOUT)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def same(a: Any, b: Any, where: str = "") -> None:
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{where}/{i}")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), f"{where} differs"
    else:
        assert a == b, where


def loss_curve(directory: Path) -> tuple[list[str], Any]:
    with wt.Tracker(directory / "weft.db") as tracker:
        runs = tracker.runs()
        return [r.status for r in runs], tracker.metric(runs[0].id, "loss")


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.timeout(600)
@pytest.mark.parametrize("example", ["train_numpy.py", "train_torch.py"])
def test_killed_training_resumes_exactly(tmp_path: Path, example: str) -> None:
    if example == "train_torch.py":
        pytest.importorskip("torch", reason="torch is not installed on this interpreter")
    script = ROOT / "examples" / example
    run(script, tmp_path / "whole")

    stops = kill_points(random.Random(example))
    for stop in stops:
        run(script, tmp_path / "killed", stop)
    run(script, tmp_path / "killed")

    whole = wt.Checkpoints(tmp_path / "whole" / "checkpoints").restore()
    resumed = wt.Checkpoints(tmp_path / "killed" / "checkpoints").restore()
    assert whole.step == resumed.step == STEPS
    same(whole.state, resumed.state, "state")  # weights and optimizer: bit-identical
    same(whole.data, resumed.data, "data")
    assert whole.rng is not None and resumed.rng is not None
    same(whole.rng["generators"], resumed.rng["generators"], "rng")  # the dropout generator (globals: unseeded)

    statuses, expected = loss_curve(tmp_path / "whole")
    statuses_killed, curve = loss_curve(tmp_path / "killed")
    assert statuses == statuses_killed == ["finished"], f"one run, resumed {KILLS} times ({stops})"
    assert curve.steps.tolist() == list(range(1, STEPS + 1)), f"every step once after {stops}"
    assert curve.values.tobytes() == expected.values.tobytes(), "the same losses as the uninterrupted run"
    leftovers = [p.name for p in (tmp_path / "killed" / "checkpoints").iterdir() if p.name.startswith(".weft-tmp")]
    assert leftovers == [], "the last open removed what the killed writes left"
