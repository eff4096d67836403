"""The ``torchscript`` adapter: a ``.pt`` file loaded with ``torch.jit.load``.

TorchScript files do not record tensor names or types. A sidecar ``<file>.json``
(``{"inputs": [{"name", "datatype", "shape"}], "outputs": [...]}``) declares them;
without it the model takes ``INPUT__0`` and returns ``OUTPUT__0`` (FP32, 2-D), as
Triton's PyTorch backend names them. Inputs are passed positionally in declared order.
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
        sidecar = os.path.splitext(path)[0] + ".json"
        if os.path.isfile(sidecar):
            with open(sidecar) as f:
                doc = json.load(f)
            self.inputs = [TensorSpec.from_dict(t) for t in doc["inputs"]]
            self.outputs = [TensorSpec.from_dict(t) for t in doc["outputs"]]
        else:
            self.inputs = [TensorSpec("INPUT__0", "FP32", [-1, -1])]
            self.outputs = [TensorSpec("OUTPUT__0", "FP32", [-1, -1])]
        self._module: Any = None

    def load(self) -> None:
        import warnings

        import torch

        with warnings.catch_warnings():
            # recent torch deprecates TorchScript; loading existing files still works
            warnings.simplefilter("ignore", DeprecationWarning)
            self._module = torch.jit.load(self.path, map_location="cpu")  # type: ignore[no-untyped-call]
        self._module.eval()

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        args = [torch.from_numpy(np.array(inputs[t.name], copy=True)) for t in self.inputs]
        with torch.inference_mode():
            result = self._module(*args)
        values = list(result) if isinstance(result, tuple | list) else [result]
        if len(values) != len(self.outputs):
            raise ModelError(f"TorchScript model {self.name!r} returned {len(values)} tensors, "
                             f"{len(self.outputs)} declared")
        return {t.name: v.detach().cpu().numpy() for t, v in zip(self.outputs, values, strict=True)}


def load(spec: str) -> TorchScriptModel:
    return TorchScriptModel(spec)
