"""SIGKILL a process at random moments while it saves checkpoints: the latest always loads."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import weft.train as wt
from train_workloads import check_state

TESTS = Path(__file__).resolve().parent.parent
KILLS = 50


def test_sigkill_at_random_points_leaves_a_loadable_checkpoint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(1234)
    directory = tmp_path / "ckpt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    last_step = -1
    for kill in range(KILLS):
        child = subprocess.Popen([sys.executable, "-c", "import sys, train_workloads; "
                                  "train_workloads.save_forever(sys.argv[1])", str(directory)],
                                 stdout=subprocess.PIPE, env=env)
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == b"ready\n", f"child did not start (kill {kill})"
            # a random instant in the save loop: this is the kill point, not synchronisation
            time.sleep(rng.uniform(0.0, 0.03))
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait(timeout=30)
            assert child.stdout is not None
            child.stdout.close()
        ckpt = wt.Checkpoints(directory, keep_last=2)
        restored = ckpt.restore()
        check_state(restored.step, restored.tensors)
        assert restored.step >= last_step, "the latest checkpoint never goes backwards"
        assert restored.step > last_step, "every child completes at least one save before it is killed"
        last_step = restored.step
        for info in ckpt.checkpoints():
            assert info.path.exists(), f"manifest names a missing file after kill {kill}"
    leftovers = [p for p in directory.iterdir() if p.name.startswith(".weft-tmp-")]
    assert len(leftovers) <= 1, f"temporary files pile up: {leftovers}"
