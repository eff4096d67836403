"""Train: the small tools every training script rewrites, done right.

Decorators (``timed``, ``retry``, ``logged``, ``cached``) that work on functions,
methods, async functions and generators; crash-safe safetensors ``Checkpoints``;
an experiment ``Tracker`` on SQLite::

    @weft.train.retry(attempts=5, on=(ConnectionError,), backoff=0.5)
    def fetch(url): ...

    with weft.train.Checkpoints("runs/exp1", keep_last=3, background=True) as ckpt:
        ckpt.save(step, {"model": model.state_dict(), "opt": opt.state_dict()},
                  data=pipe.state_dict(), rng=True, metrics={"loss": loss})
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from weft.train._logged import logged, summarize
from weft.train._retry import RetryEvent, RetryStatistics, retry
from weft.train._timed import Timer, TimingStatistics, timed, timings

if TYPE_CHECKING:
    from weft.train._cached import CacheStatistics, cached, content_key
    from weft.train._checkpoint_results import Checkpoint, CheckpointSave, CheckpointStatistics
    from weft.train._checkpoint_store import CheckpointInfo
    from weft.train._checkpoints import Checkpoints
    from weft.train._safetensors import load_safetensors, save_safetensors
    from weft.train._tracker import MetricSeries, Run, RunInfo, Tracker, TrackerStatistics

__all__ = [
    "CacheStatistics",
    "Checkpoint",
    "CheckpointInfo",
    "CheckpointSave",
    "CheckpointStatistics",
    "Checkpoints",
    "MetricSeries",
    "RetryEvent",
    "RetryStatistics",
    "Run",
    "RunInfo",
    "Timer",
    "TimingStatistics",
    "Tracker",
    "TrackerStatistics",
    "cached",
    "content_key",
    "load_safetensors",
    "logged",
    "retry",
    "save_safetensors",
    "summarize",
    "timed",
    "timings",
]

# NumPy-backed parts load on first use so `import weft.train` stays light.
_LAZY = {
    "CacheStatistics": "weft.train._cached",
    "cached": "weft.train._cached",
    "content_key": "weft.train._cached",
    "Checkpoint": "weft.train._checkpoint_results",
    "CheckpointInfo": "weft.train._checkpoint_store",
    "CheckpointSave": "weft.train._checkpoint_results",
    "CheckpointStatistics": "weft.train._checkpoint_results",
    "Checkpoints": "weft.train._checkpoints",
    "load_safetensors": "weft.train._safetensors",
    "save_safetensors": "weft.train._safetensors",
    "MetricSeries": "weft.train._tracker",
    "Run": "weft.train._tracker",
    "RunInfo": "weft.train._tracker",
    "Tracker": "weft.train._tracker",
    "TrackerStatistics": "weft.train._tracker",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'weft.train' has no attribute {name!r}")
