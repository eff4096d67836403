"""LitServe peer: the MLP behind LitServe's batching (max_batch_size, batch_timeout on LitAPI)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import litserve as ls
import numpy as np
from model import Predictor


class MLPAPI(ls.LitAPI):  # type: ignore[misc]
    def __init__(self, kind: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kind = kind

    def setup(self, device: Any) -> None:
        self.model = Predictor(self.kind)

    # No annotation on ``request``: LitServe builds its endpoint from it (a string annotation
    # from ``from __future__ import annotations`` would turn it into a query parameter).
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        return np.asarray(request["x"], dtype=np.float32).reshape(-1, 512)

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(inputs)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(x)

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, output: np.ndarray) -> dict[str, Any]:
        return {"y": np.asarray(output).reshape(1, -1).tolist()}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--kind", default="numpy")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--batch-timeout", type=float, default=0.002)
    a = p.parse_args()
    api = MLPAPI(a.kind, max_batch_size=a.max_batch_size, batch_timeout=a.batch_timeout)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=30)
    server.run(host="127.0.0.1", port=a.port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()
