"""MLServer peer: a custom runtime; adaptive batching comes from model-settings.json."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from model import Predictor


class MLPRuntime(MLModel):  # type: ignore[misc]
    async def load(self) -> bool:
        extra = (self.settings.parameters.extra if self.settings.parameters else None) or {}
        self.model = Predictor(str(extra.get("kind", "numpy")))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).reshape(-1, 512)
        y = self.model.predict(x)
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("y", y)])
