"""Module-level helpers for weft.train tests that run in other processes."""

from __future__ import annotations

import sys

import numpy as np


def state_for(step: int) -> dict[str, np.ndarray]:
    """A deterministic state whose every value reveals the step it belongs to."""
    return {
        "w": np.full((128, 256), step, dtype=np.float32),     # 128 KiB
        "b": np.arange(1000, dtype=np.int64) + step,
        "flag": np.array([step % 2 == 0]),
    }


def check_state(step: int, tensors: dict[str, np.ndarray]) -> None:
    expected = state_for(step)
    assert sorted(tensors) == sorted(expected), sorted(tensors)
    for name, array in expected.items():
        np.testing.assert_array_equal(tensors[name], array, err_msg=f"{name} of step {step}")


def save_forever(directory: str) -> None:
    """Save checkpoints in a loop until killed; print 'ready' once one save is done."""
    from weft.train import Checkpoints

    ckpt = Checkpoints(directory, keep_last=2)
    latest = ckpt.latest()
    step = 0 if latest is None else latest.step + 1
    announced = False
    while True:
        ckpt.save(step, state_for(step), metrics={"loss": 1.0 / (step + 1)})
        if not announced:
            sys.stdout.write("ready\n")
            sys.stdout.flush()
            announced = True
        step += 1


def log_metrics(db: str, worker: int, count: int) -> int:
    """Log ``count`` metrics, one transaction each, to a fresh run; return how many."""
    from weft.train import Tracker

    tracker = Tracker(db)
    try:
        with tracker.start_run(f"proc-{worker}", params={"worker": worker}) as run:
            for i in range(count):
                run.log({"loss": float(i)}, step=i)
    finally:
        tracker.close()
    return count


if __name__ == "__main__":
    save_forever(sys.argv[1])
