"""Plain FastAPI peer: one request, one forward pass, no batching (uvicorn, one worker per core).

Started as ``uvicorn fastapi_server:app --workers N``; the model kind comes from
WEFT_BENCH_KIND because uvicorn imports the app by name in each worker.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from fastapi import FastAPI
from model import Predictor
from pydantic import BaseModel

app = FastAPI()
model = Predictor(os.environ.get("WEFT_BENCH_KIND", "numpy"))


class Request(BaseModel):
    x: list[list[float]]


@app.post("/predict")
def predict(req: Request) -> dict[str, Any]:
    y = model.predict(np.asarray(req.x, dtype=np.float32))
    return {"y": y.tolist()}
