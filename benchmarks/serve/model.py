"""The served model: a NumPy MLP 512 -> 2048 -> 2048 -> 10 (fp32, ReLU) and its ONNX export.

Pure NumPy (plus onnxruntime for the ONNX form) so that every peer's environment can import
it without weft. Weights come from one seeded generator and are saved once to an .npz file
that every server loads, so all servers compute the same function.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import numpy as np

SIZES = (512, 2048, 2048, 10)
SEED = 0
DATA = Path(__file__).resolve().parents[1] / ".data" / "serve"
WEIGHTS = DATA / "mlp.npz"
ONNX = DATA / "mlp.onnx"


def build_weights(seed: int = SEED) -> dict[str, np.ndarray]:
    """He-initialised fp32 weights w0..w2, zero biases b0..b2: the same draw as examples/mlp.py."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for i, (n_in, n_out) in enumerate(itertools.pairwise(SIZES)):
        out[f"w{i}"] = rng.standard_normal((n_in, n_out), dtype=np.float32) * np.float32(np.sqrt(2.0 / n_in))
        out[f"b{i}"] = np.zeros(n_out, dtype=np.float32)
    return out


def save_weights(weights: dict[str, np.ndarray], path: Path = WEIGHTS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **weights)
    tmp.replace(path)
    return path


def load_weights(path: Path = WEIGHTS) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: np.ascontiguousarray(z[k], dtype=np.float32) for k in z.files}


def forward(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """(n, 512) fp32 -> (n, 10) fp32."""
    h = np.asarray(x, dtype=np.float32)
    n_layers = len(SIZES) - 1
    for i in range(n_layers):
        h = h @ weights[f"w{i}"] + weights[f"b{i}"]
        if i < n_layers - 1:
            np.maximum(h, 0.0, out=h)
    return h


class Predictor:
    """What the peer servers call: ``predict(x) -> y`` for the NumPy or the ONNX form."""

    def __init__(self, kind: str = "numpy") -> None:
        self.kind = kind
        if kind == "numpy":
            self._w = load_weights(WEIGHTS)
        elif kind == "onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            # One intra-op thread per call, as weft's ONNX adapter does: the servers already
            # run calls side by side, and 2 cores leave nothing for a second thread.
            options.intra_op_num_threads = int(os.environ.get("WEFT_ONNX_THREADS", "1"))
            self._sess: Any = ort.InferenceSession(str(ONNX), options,
                                                   providers=["CPUExecutionProvider"])
        else:
            raise ValueError(f"model kind {kind!r} is not 'numpy' or 'onnx'")

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.kind == "numpy":
            return forward(self._w, x)
        return np.asarray(self._sess.run(["y"], {"x": x})[0])


def build_onnx(weights_path: Path = WEIGHTS, out: Path = ONNX) -> Path:
    """Write the ONNX graph (MatMul + Add + Relu, dynamic batch) with the onnx helper API."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = load_weights(weights_path)
    n_layers = len(SIZES) - 1
    nodes = []
    inits = []
    prev = "x"
    for i in range(n_layers):
        inits += [numpy_helper.from_array(w[f"w{i}"], f"w{i}"),
                  numpy_helper.from_array(w[f"b{i}"], f"b{i}")]
        mm, add = f"mm{i}", ("y" if i == n_layers - 1 else f"add{i}")
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [mm]))
        nodes.append(helper.make_node("Add", [mm, f"b{i}"], [add]))
        if i < n_layers - 1:
            nodes.append(helper.make_node("Relu", [add], [f"h{i}"]))
            prev = f"h{i}"
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", SIZES[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", SIZES[-1]])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="weft-benchmarks")
    model.ir_version = 8
    onnx.checker.check_model(model)
    tmp = out.with_suffix(".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(out)
    return out


def request_input(seed: int = 1) -> np.ndarray:
    """The one 1x512 fp32 input every request carries."""
    return np.random.default_rng(seed).standard_normal((1, SIZES[0])).astype(np.float32)


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["onnx"]:
        print(build_onnx())
    else:
        print(save_weights(build_weights()))
