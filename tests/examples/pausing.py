"""Run an example script, pausing it for good at one chosen point so a test can SIGKILL it there.

    python pausing.py STOP FD example.py [args...]

STOP is ``none``, ``step:<n>`` (in the training loop, as the batch of step n is taken),
``write:<n>`` (half-way through writing the checkpoint file of step n) or
``manifest:<n>`` (the checkpoint file of step n renamed into place, its manifest
entry not yet written). On reaching it, the thread writes ``paused <STOP>`` to file
descriptor FD and blocks forever: the test knows exactly where the process is when it
kills it, with no sleeps or timing involved.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import threading
from collections.abc import Iterator
from typing import Any


def pause(fd: int, where: str) -> None:
    os.write(fd, f"paused {where}\n".encode())
    threading.Event().wait()  # until the SIGKILL


def install(stop: str, fd: int) -> None:
    if stop == "none":
        return
    kind, _, number = stop.partition(":")
    at = int(number)
    if kind == "step":
        # batches are counted from the step the run resumed at (or 0), whatever it logs
        from weft.data._pipeline import Pipeline
        from weft.train._checkpoints import Checkpoints

        resumed = [0]
        real_restore, real_iter = Checkpoints.restore, Pipeline.__iter__

        def restore(self: Checkpoints, *args: Any, **kwargs: Any) -> Any:
            restored = real_restore(self, *args, **kwargs)
            resumed[0] = restored.step
            return restored

        def counted(self: Pipeline) -> Iterator[Any]:
            for n, item in enumerate(real_iter(self), resumed[0] + 1):
                if n == at:
                    pause(fd, stop)
                yield item

        Checkpoints.restore = restore  # type: ignore[method-assign]
        Pipeline.__iter__ = counted  # type: ignore[method-assign]
    elif kind == "write":
        import weft.train._checkpoints as checkpoints

        real_write = checkpoints.write_safetensors

        def write(f: Any, tensors: Any, metadata: Any = None) -> Any:
            if json.loads(metadata["weft"])["step"] == at:
                import io

                whole = io.BytesIO()
                real_write(whole, tensors, metadata)
                f.write(whole.getvalue()[: len(whole.getvalue()) // 2])
                f.flush()
                pause(fd, stop)
            return real_write(f, tensors, metadata)

        checkpoints.write_safetensors = write
    elif kind == "manifest":
        from weft.train._checkpoint_store import CheckpointStore

        real_write_manifest = CheckpointStore._write

        def write_manifest(self: CheckpointStore, entries: Any) -> None:
            if entries and max(e.step for e in entries) == at:
                pause(fd, stop)
            real_write_manifest(self, entries)

        CheckpointStore._write = write_manifest  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown stop point {stop!r}")


if __name__ == "__main__":
    stop, fd, script, *args = sys.argv[1:]
    install(stop, int(fd))
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))  # as `python script` does: its modules import
    runpy.run_path(script, run_name="__main__")
