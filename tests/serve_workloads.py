"""Models for the serve tests (module-level, so process workers and subprocess servers import them)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np

from weft.serve import TensorSpec

#: How often a gated model in a subprocess server looks for its gate file: only how soon
#: it notices, never whether.
GATE_FILE_POLL_SECONDS = 0.005


class Doubler:
    """y = 2 x for FP32 rows of any width; releases the GIL enough for threads."""

    name = "doubler"
    inputs = (TensorSpec("x", "FP32", [-1, -1]),)
    outputs = (TensorSpec("y", "FP32", [-1, -1]), TensorSpec("rows", "INT64", [-1]))
    releases_gil = True

    def load(self) -> None:
        self.loaded_pid = os.getpid()

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        return {"y": x * np.float32(2), "rows": np.full(x.shape[0], x.shape[0], dtype=np.int64)}


def echo(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Returns every input as an output of the same name (any datatype, any shape)."""
    return dict(inputs)


class Gate:
    """Blocks every batch until ``open()`` (in-process) or until the file named by
    $WEFT_TEST_GATE exists (subprocess servers); records the batches it saw."""

    name = "gate"
    inputs = (TensorSpec("x", "FP32", [-1, 4]),)
    outputs = (TensorSpec("y", "FP32", [-1, 4]),)
    releases_gil = True

    def __init__(self) -> None:
        self._event = threading.Event()
        self.entered = threading.Event()
        self.batches: list[np.ndarray] = []

    def open(self) -> None:
        self._event.set()

    def load(self) -> None:
        pass

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.entered.set()
        gate_file = os.environ.get("WEFT_TEST_GATE")
        if gate_file:
            while not os.path.exists(gate_file):  # a subprocess server has no event to wait on
                time.sleep(GATE_FILE_POLL_SECONDS)
        else:
            assert self._event.wait(60), "the test never opened the gate"
        self.batches.append(inputs["x"].copy())
        return {"y": inputs["x"] + np.float32(1)}


class Broken:
    """Raises on every batch (the server must answer 500 and keep serving)."""

    name = "broken"
    inputs = (TensorSpec("x", "FP32", [-1, 2]),)
    outputs = (TensorSpec("y", "FP32", [-1, 2]),)

    def load(self) -> None:
        pass

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        raise RuntimeError("this model always fails")


class HoldsGil:
    """A pure-Python model (holds the GIL): backend='auto' picks processes on a GIL build."""

    name = "pyloop"
    inputs = (TensorSpec("x", "INT64", [-1, 3]),)
    outputs = (TensorSpec("pid", "INT64", [-1]), TensorSpec("total", "INT64", [-1]))

    def load(self) -> None:
        pass

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = inputs["x"].tolist()
        totals = [sum(r) for r in rows]
        return {"pid": np.full(len(rows), os.getpid(), dtype=np.int64), "total": np.array(totals, dtype=np.int64)}


class SlowLoad:
    """Loads only once the test sets ``release``; ``loading`` is set when load() begins."""

    name = "slowload"
    inputs = (TensorSpec("x", "FP32", [-1, 4]),)
    outputs = (TensorSpec("x", "FP32", [-1, 4]),)
    releases_gil = True

    def __init__(self) -> None:
        self.loading = threading.Event()
        self.release = threading.Event()

    def load(self) -> None:
        self.loading.set()
        assert self.release.wait(60), "the test never released the load"

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(inputs)


class Picky:
    """y = x + 1, but fails on any row holding a negative value, naming those values (so a
    client that sees another request's error text would see another's values). A row
    holding ``HOLD`` blocks its batch until ``release`` is set, so a test can queue many
    requests behind it and have the freed worker take them as one batch."""

    HOLD = 1000.0
    name = "picky"
    inputs = (TensorSpec("x", "FP32", [-1, 2]),)
    outputs = (TensorSpec("y", "FP32", [-1, 2]),)
    releases_gil = True

    def __init__(self) -> None:
        self.held = threading.Event()
        self.release = threading.Event()
        self.batch_rows: list[int] = []

    def load(self) -> None:
        pass

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        if (x == self.HOLD).any():
            self.held.set()
            assert self.release.wait(60), "the test never released the held batch"
        self.batch_rows.append(x.shape[0])
        bad = x[(x < 0).any(axis=1)]
        if len(bad):
            raise ValueError(f"feature overflow in {sorted(bad[:, 0].tolist())}")
        return {"y": x + np.float32(1)}


class Misdeclared:
    """Declares y FP32 [-1, 2]; the first value of its one-row input picks what it returns:
    0 the declared output, 1 a wrong shape, 2 float64, 3 an extra output, 4 no y."""

    name = "misdeclared"
    inputs = (TensorSpec("x", "FP32", [-1, 2]),)
    outputs = (TensorSpec("y", "FP32", [-1, 2]),)
    releases_gil = True

    def load(self) -> None:
        pass

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = inputs["x"]
        mode = int(x[0, 0])
        if mode == 1:
            return {"y": np.zeros((x.shape[0], 3), np.float32)}
        if mode == 2:
            return {"y": x.astype(np.float64)}
        if mode == 3:
            return {"y": x, "z": x}
        if mode == 4:
            return {"z": x}
        return {"y": x}


class FailsToLoad:
    name = "failstoload"

    def load(self) -> None:
        raise OSError("weights.bin is missing")

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return inputs
