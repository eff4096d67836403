"""What runs on a model worker (a thread or a process): load once, predict batches.

Functions here are module-level so process workers (spawn) can import them. Each
worker process keeps its loaded models in a module-level cache keyed by the model's
key, so a model is loaded once per process; thread workers share that cache, unless
the model sets ``thread_safe = False``, in which case each thread loads its own.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from weft.serve._adapters import LoadedModel, load_model
from weft.serve._types import TensorSpec

__all__ = ["ModelDescription", "ModelRef", "describe", "forget", "get_model", "predict"]


@dataclass(frozen=True)
class ModelRef:
    """How a worker finds a model: a spec (string or picklable object) and a cache key."""

    spec: Any
    key: str


@dataclass(frozen=True)
class ModelDescription:
    """What a worker reports about a loaded model (picklable: it crosses processes)."""

    name: str
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


_cache: dict[str, LoadedModel] = {}
_cache_lock = threading.Lock()
_local = threading.local()


def get_model(ref: ModelRef) -> LoadedModel:
    model = _cache.get(ref.key)
    if model is None:
        with _cache_lock:
            model = _cache.get(ref.key)
            if model is None:
                model = load_model(ref.spec)
                _cache[ref.key] = model
    if getattr(model.model, "thread_safe", True):
        return model
    mine: dict[str, LoadedModel] = _local.__dict__.setdefault("models", {})
    own = mine.get(ref.key)
    if own is None:
        own = mine[ref.key] = load_model(ref.spec)
    return own


def describe(ref: ModelRef) -> ModelDescription:
    """Load the model (if needed) and return its name, platform and tensors."""
    model = get_model(ref)
    return ModelDescription(model.name, model.platform, model.inputs, model.outputs)


def predict(ref: ModelRef, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return get_model(ref).predict(inputs)


def forget(key: str) -> None:
    """Drop a model from this process's cache (the in-process server calls it on stop)."""
    with _cache_lock:
        _cache.pop(key, None)
