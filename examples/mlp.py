"""A NumPy MLP 512 -> 2048 -> 2048 -> 10 (fp32, seeded weights): the model the serving
benchmarks and docs use.

    weft serve examples/mlp.py:Model --max-batch-size 32 --max-delay-ms 2
"""

from __future__ import annotations

import itertools

import numpy as np

from weft.serve import TensorSpec

SIZES = (512, 2048, 2048, 10)


class Model:
    name = "mlp"
    inputs = (TensorSpec("x", "FP32", [-1, SIZES[0]]),)
    outputs = (TensorSpec("y", "FP32", [-1, SIZES[-1]]),)
    releases_gil = True  # the matrix products run in BLAS without the GIL: thread workers suffice

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.weights: list[tuple[np.ndarray, np.ndarray]] = []

    def load(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.weights = []
        for fan_in, fan_out in itertools.pairwise(SIZES):
            w = rng.standard_normal((fan_in, fan_out), dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
            self.weights.append((w, np.zeros(fan_out, dtype=np.float32)))

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        h = np.asarray(inputs["x"], dtype=np.float32)
        for i, (w, b) in enumerate(self.weights):
            h = h @ w + b
            if i < len(self.weights) - 1:
                np.maximum(h, 0, out=h)
        return {"y": h}


def forward(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """The same computation without a server, to check served answers against."""
    model = Model(seed)
    model.load()
    return model.predict({"x": x})["y"]
