"""weft: make Python AI workloads fast with or without the GIL.

Subpackages load on first use, so ``import weft`` stays light:
``weft.data`` (Load), ``weft.train`` (Train), ``weft.serve`` (Serve),
``weft.lab`` (Lab), ``weft.exec`` (the execution layer), ``weft.runtime``.
"""

from __future__ import annotations

import importlib
from typing import Any

from weft.errors import (
    BackendUnavailable,
    CheckpointError,
    ConfigError,
    DataError,
    ExecutorClosed,
    LabError,
    ModelError,
    ProtocolError,
    RemoteError,
    ResumeError,
    ServeError,
    TrackerError,
    WeftError,
    WorkerDied,
)

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ExecutorClosed",
    "LabError",
    "ModelError",
    "ProtocolError",
    "RemoteError",
    "ResumeError",
    "ServeError",
    "TrackerError",
    "WeftError",
    "WorkerDied",
    "__version__",
    "data",
    "errors",
    "exec",
    "lab",
    "runtime",
    "serve",
    "train",
]

_SUBMODULES = {"data", "errors", "exec", "lab", "runtime", "serve", "train"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"weft.{name}")
    raise AttributeError(f"module 'weft' has no attribute {name!r}")
