"""Functions the cluster tests run on Ray or Dask workers (importable there: the test
fixtures put this directory on the workers' PYTHONPATH)."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

#: How often a blocked call looks for its release file. Not a test margin: the test
#: waits for the markers a call writes, never for time to pass.
POLL_SECONDS = 0.005


def where() -> str:
    """The node (Ray node id) or worker (Dask address) this call runs on."""
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            return str(ray.get_runtime_context().get_node_id())
    if "distributed" in sys.modules:
        from distributed import get_worker

        try:
            return str(get_worker().address)
        except ValueError:
            pass
    return "local"


def mark(directory: str, name: str) -> None:
    """Write ``directory/name`` atomically with this process's pid and node."""
    path = Path(directory) / name
    tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "node": where()}))
    tmp.rename(path)


def markers(directory: str, prefix: str) -> dict[str, dict[str, Any]]:
    """Markers written under ``directory`` whose name starts with ``prefix``."""
    found = {}
    for path in Path(directory).glob(f"{prefix}*"):
        if not path.name.endswith(".tmp"):
            found[path.name] = json.loads(path.read_text())
    return found


def wait_for_release(directory: str, x: int) -> int:
    """Mark ``started-x``, then block until ``directory/release`` exists; return x*x."""
    mark(directory, f"started-{x}-{uuid.uuid4().hex[:8]}")
    release = Path(directory) / "release"
    while not release.exists():
        time.sleep(POLL_SECONDS)
    return x * x


def zero_or_wait(directory: str, x: int) -> int:
    """0 at once for item 0, otherwise :func:`wait_for_release`."""
    return 0 if x == 0 else wait_for_release(directory, x)


def timed_square(x: int) -> tuple[int, float, float]:
    """x*x with the system-wide monotonic clock read when the call started and ended."""
    start = time.monotonic()
    return x * x, start, time.monotonic()


def timed_sum(a: np.ndarray) -> tuple[float, float, float]:
    start = time.monotonic()
    return float(a.sum()), start, time.monotonic()


def doubled(a: np.ndarray) -> np.ndarray:
    return a * 2


def node_and_square(x: int) -> tuple[str, int]:
    return where(), x * x


class Model:
    """A callable object that counts its builds (unpickling) and its pickles.

    ``pickled`` counts in the process that pickles (the driver); every build on the
    cluster writes a ``built-`` marker, so the test counts builds across processes.
    """

    pickled = 0

    def __init__(self, directory: str, offset: int = 0) -> None:
        self.directory = directory
        self.offset = offset

    def __getstate__(self) -> dict[str, Any]:
        type(self).pickled += 1
        return {"directory": self.directory, "offset": self.offset}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        mark(self.directory, f"built-{uuid.uuid4().hex}")

    def __call__(self, x: int) -> tuple[int, int]:
        return x * x + self.offset, os.getpid()


class BlockingModel(Model):
    """A Model whose calls mark ``started-`` and wait for ``release`` first."""

    def __call__(self, x: int) -> tuple[int, int]:
        wait_for_release(self.directory, x)
        return x * x + self.offset, os.getpid()


class Payload:
    """Bytes that count how often they are pickled (in the pickling process)."""

    pickled = 0

    def __init__(self, size: int) -> None:
        self.data = b"x" * size

    def __reduce__(self) -> tuple[Any, ...]:
        type(self).pickled += 1
        return (_payload, (len(self.data),))


def _payload(size: int) -> Payload:
    p = Payload.__new__(Payload)
    p.data = b"x" * size
    return p


def payload_size(payload: Payload, x: int) -> int:
    return len(payload.data) + x
