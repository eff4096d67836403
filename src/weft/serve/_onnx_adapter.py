"""The ``onnx`` adapter: a ``.onnx`` file run by onnxruntime (which releases the GIL)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from weft.errors import ConfigError
from weft.serve._types import TensorSpec

__all__ = ["OnnxModel", "load"]

_ONNX_TYPES = {
    "tensor(bool)": "BOOL", "tensor(uint8)": "UINT8", "tensor(uint16)": "UINT16", "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64", "tensor(int8)": "INT8", "tensor(int16)": "INT16", "tensor(int32)": "INT32",
    "tensor(int64)": "INT64", "tensor(float16)": "FP16", "tensor(float)": "FP32", "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def _spec(arg: Any) -> TensorSpec:
    datatype = _ONNX_TYPES.get(arg.type)
    if datatype is None:
        raise ConfigError(f"ONNX tensor {arg.name!r} has type {arg.type}, which the inference protocol cannot carry")
    shape = [d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape] or [-1]
    shape[0] = -1  # the first dimension is the batch
    return TensorSpec(arg.name, datatype, shape)


class OnnxModel:
    platform = "onnxruntime_onnx"

    def __init__(self, path: str) -> None:
        if not os.path.isfile(path):
            raise ConfigError(f"ONNX model file {path!r} does not exist")
        self.path = path
        self.name = os.path.splitext(os.path.basename(path))[0]
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        self._session: Any = None

    def load(self) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # Workers already run batches in parallel; one intra-op thread each avoids oversubscription.
        options.intra_op_num_threads = int(os.environ.get("WEFT_ONNX_THREADS", "1"))
        self._session = onnxruntime.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        self.inputs = [_spec(a) for a in self._session.get_inputs()]
        self.outputs = [_spec(a) for a in self._session.get_outputs()]

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in self.outputs]
        feeds = {k: (v.astype(str) if v.dtype == object else v) for k, v in inputs.items()}
        values = self._session.run(names, feeds)
        return dict(zip(names, values, strict=True))


def load(spec: str) -> OnnxModel:
    return OnnxModel(spec)
