"""Module-level helpers for weft.train tests that run in other processes."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

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


def save_forever(directory: str, ready: Callable[[], object] | None = None) -> None:
    """Save checkpoints in a loop until killed; call ``ready`` (default: print 'ready')
    once the first save is done."""
    from weft.train import Checkpoints

    ckpt = Checkpoints(directory, keep_last=2)
    latest = ckpt.latest()
    step = 0 if latest is None else latest.step + 1
    announced = False
    while True:
        ckpt.save(step, state_for(step), metrics={"loss": 1.0 / (step + 1)})
        if not announced:
            if ready is None:
                sys.stdout.write("ready\n")
                sys.stdout.flush()
            else:
                ready()
            announced = True
        step += 1


def fork_savers(directory: str) -> None:
    """Start savers for the crash test without paying an interpreter start each time.

    Imports weft once, then for every ``fork`` line on stdin forks a child running
    :func:`save_forever`; prints ``ready <pid>`` when the child's first save is done and
    ``reaped <pid> <signal>`` once the child is gone (whoever killed it). Run it with one
    BLAS thread: a process that forks must have no other threads.
    """
    import weft.train._checkpoints  # noqa: F401  (imported once, shared by every child)

    for line in sys.stdin:
        if line.strip() != "fork":
            break
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: saves until SIGKILL, never returns into this loop
            os.close(read_end)
            try:
                save_forever(directory, ready=functools.partial(os.write, write_end, b"."))
            finally:
                os._exit(1)
        os.close(write_end)
        started = os.read(read_end, 1) == b"."  # b"" if the child died before its first save
        os.close(read_end)
        print(f"{'ready' if started else 'failed'} {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"reaped {pid} {os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0}", flush=True)


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
