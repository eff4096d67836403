"""SIGKILL a process at random moments while it saves checkpoints: the latest always loads."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import weft.train as wt
from train_workloads import check_state

TESTS = Path(__file__).resolve().parent.parent
KILLS = 50
#: The kill lands this long (uniformly drawn) after the saver's first save: a few saves
#: of the 140 KB state, so kills hit every part of a save (file, rename, manifest, delete).
KILL_WINDOW_SECONDS = 0.03


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="forks the savers")
@pytest.mark.timeout(600)  # 50 savers; far less on an idle machine, bounded on a loaded one
def test_sigkill_at_random_points_leaves_a_loadable_checkpoint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(1234)
    directory = tmp_path / "ckpt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    # one process imports weft once and forks each saver (an interpreter start per kill
    # would dominate the test, and stretch it past any timeout on a busy machine)
    zygote = subprocess.Popen([sys.executable, "-c", "import sys, train_workloads; "
                               "train_workloads.fork_savers(sys.argv[1])", str(directory)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    assert zygote.stdin is not None and zygote.stdout is not None
    last_step = -1
    saver = None  # the pid of a saver not yet reaped
    try:
        for kill in range(KILLS):
            zygote.stdin.write(b"fork\n")
            zygote.stdin.flush()
            started = zygote.stdout.readline().split()
            assert len(started) == 2, f"the saver zygote stopped (kill {kill})"
            saver = int(started[1])
            assert started[0] == b"ready", f"saver {kill} died before its first save"
            # a random instant in the save loop: this is the kill point, not synchronisation
            time.sleep(rng.uniform(0.0, KILL_WINDOW_SECONDS))
            os.kill(saver, signal.SIGKILL)
            reaped = zygote.stdout.readline().split()
            assert reaped == [b"reaped", started[1], str(int(signal.SIGKILL)).encode()], reaped
            saver = None  # reaped: it is gone, so its files are final
            ckpt = wt.Checkpoints(directory, keep_last=2)
            restored = ckpt.restore()
            check_state(restored.step, restored.state)
            assert restored.step > last_step, "every saver completes a save before it is killed"
            last_step = restored.step
            for info in ckpt.checkpoints():
                assert info.path.exists(), f"manifest names a missing file after kill {kill}"
    finally:
        if saver is not None:  # a failed assertion left a saver running: stop it
            with contextlib.suppress(ProcessLookupError):
                os.kill(saver, signal.SIGKILL)
        zygote.stdin.close()  # the zygote's loop ends with its stdin
        try:
            zygote.wait(timeout=60)
        finally:
            zygote.kill()
            zygote.stdout.close()
    leftovers = [p for p in directory.iterdir() if p.name.startswith(".weft-tmp-")]
    assert len(leftovers) <= 1, f"temporary files pile up: {leftovers}"
