"""The ``torchscript`` adapter: a ``.pt`` file loaded with ``torch.jit.load``.

TorchScript files do not record tensor names or types. A sidecar JSON file beside the
model, ``<file>.json`` (``model.pt.json``; ``model.json`` also works), declares them:
``{"inputs": [{"name", "datatype", "shape"}], "outputs": [...]}``. Without one, the
inputs are ``INPUT__0`` .. ``INPUT__<n-1>`` for the n arguments of ``forward`` and the
outputs ``OUTPUT__0`` .. for the tensors it returns (FP32, 2-D), as Triton's PyTorch
backend names them. Inputs are passed positionally in declared order.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from weft.errors import ConfigError, ModelError
from weft.serve._types import TensorSpec

__all__ = ["TorchScriptModel", "load"]


class TorchScriptModel:
    platform = "pytorch_libtorch"

    def __init__(self, path: str) -> None:
        if not os.path.isfile(path):
            raise ConfigError(f"TorchScript file {path!r} does not exist")
        self.path = path
        self.name = os.path.splitext(os.path.basename(path))[0]
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        self.sidecar = next((p for p in (path + ".json", os.path.splitext(path)[0] + ".json") if os.path.isfile(p)),
                            None)
        if self.sidecar is not None:
            with open(self.sidecar) as f:
                doc = json.load(f)
            self.inputs = [TensorSpec.from_dict(t) for t in doc["inputs"]]
            self.outputs = [TensorSpec.from_dict(t) for t in doc["outputs"]]
        self._module: Any = None

    def load(self) -> None:
        import warnings

        import torch

        with warnings.catch_warnings():
            # recent torch deprecates TorchScript; loading existing files still works
            warnings.simplefilter("ignore", DeprecationWarning)
            self._module = torch.jit.load(self.path, map_location="cpu")  # type: ignore[no-untyped-call]
        self._module.eval()
        if self.sidecar is None:  # Triton's names, as many as forward takes and returns
            schema = self._module.forward.schema
            arguments = [a for a in schema.arguments if a.name != "self"]
            self.inputs = [TensorSpec(f"INPUT__{i}", "FP32", [-1, -1]) for i in range(len(arguments))]
            returned = schema.returns[0].type if len(schema.returns) == 1 else None
            count = len(returned.elements()) if isinstance(returned, torch.TupleType) else 1
            self.outputs = [TensorSpec(f"OUTPUT__{i}", "FP32", [-1, -1]) for i in range(count)]

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        args = [torch.from_numpy(np.array(inputs[t.name], copy=True)) for t in self.inputs]
        with torch.inference_mode():
            result = self._module(*args)
        values = list(result) if isinstance(result, tuple | list) else [result]
        if len(values) != len(self.outputs):
            raise ModelError(f"TorchScript model {self.name!r} returned {len(values)} tensors, "
                             f"{len(self.outputs)} declared" + (f" in {self.sidecar}" if self.sidecar else ""))
        return {t.name: v.detach().cpu().numpy() for t, v in zip(self.outputs, values, strict=True)}


def load(spec: str) -> TorchScriptModel:
    return TorchScriptModel(spec)
