"""The demo's model: a one-hidden-layer MLP in NumPy, its SGD step, and its serving adapter."""

from __future__ import annotations

import numpy as np

from weft.demo._dataset import CLASSES, SIDE

__all__ = ["DemoModel", "forward", "init_params", "learning_rate", "sgd_step"]

#: Learning rate of the first epoch; each later epoch multiplies it by LR_DECAY. The values
#: the demo was tuned with: with momentum 0.9 both sizes end well above chance (1/3).
LEARNING_RATE = 0.05
LR_DECAY = 0.85
MOMENTUM = 0.9
#: Added inside the log of the cross-entropy so a probability of exactly 0 costs a large
#: but finite loss.
_LOG_EPSILON = 1e-9


def learning_rate(epoch: int) -> float:
    """The step size of ``epoch`` (from 0): exponential decay from LEARNING_RATE."""
    return LEARNING_RATE * (LR_DECAY ** epoch)


def init_params(hidden: int, seed: int = 0) -> dict[str, np.ndarray]:
    """He-initialised weights for the ReLU layer, variance 1/hidden for the output layer."""
    rng = np.random.default_rng(seed)
    inputs = SIDE * SIDE
    return {"w1": (rng.standard_normal((inputs, hidden)) * np.sqrt(2 / inputs)).astype(np.float32),
            "b1": np.zeros(hidden, np.float32),
            "w2": (rng.standard_normal((hidden, len(CLASSES))) * np.sqrt(1 / hidden)).astype(np.float32),
            "b2": np.zeros(len(CLASSES), np.float32)}


def forward(params: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hidden activations, class probabilities)."""
    h = np.maximum(x @ params["w1"] + params["b1"], 0)
    logits = h @ params["w2"] + params["b2"]
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return h, e / e.sum(axis=1, keepdims=True)


def sgd_step(params: dict[str, np.ndarray], velocity: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray,
             lr: float, momentum: float = MOMENTUM) -> tuple[float, float]:
    """One step of SGD with momentum on softmax cross-entropy; returns (loss, accuracy)."""
    h, p = forward(params, x)
    n = len(y)
    loss = float(-np.log(p[np.arange(n), y] + _LOG_EPSILON).mean())
    acc = float((p.argmax(axis=1) == y).mean())
    d_logits = p
    d_logits[np.arange(n), y] -= 1
    d_logits /= n
    grads = {"w2": h.T @ d_logits, "b2": d_logits.sum(axis=0)}
    d_h = (d_logits @ params["w2"].T) * (h > 0)
    grads["w1"] = x.T @ d_h
    grads["b1"] = d_h.sum(axis=0)
    for k, g in grads.items():
        velocity[k] = momentum * velocity[k] - lr * g.astype(np.float32)
        params[k] += velocity[k]
    return loss, acc


class DemoModel:
    """The trained MLP as a weft.serve model: SIDE * SIDE pixels in, one probability per class out."""

    name = "shapes"
    releases_gil = True   # NumPy matmuls release the GIL: threads serve it in parallel

    def __init__(self, checkpoints: str = "runs/demo/checkpoints") -> None:
        from weft.serve import TensorSpec

        self.checkpoints = checkpoints
        self.inputs = [TensorSpec("image", "FP32", [-1, SIDE * SIDE])]
        self.outputs = [TensorSpec("probs", "FP32", [-1, len(CLASSES)])]
        self.params: dict[str, np.ndarray] = {}

    def load(self) -> None:
        from weft.train import Checkpoints

        self.params = dict(Checkpoints(self.checkpoints).restore().state)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        _, probs = forward(self.params, inputs["image"].astype(np.float32, copy=False))
        return {"probs": probs.astype(np.float32)}
