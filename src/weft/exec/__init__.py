"""weft's execution layer: the only place weft starts threads or processes.

One protocol (:class:`Executor`: ``submit``, ``map``, ``map_indexed``,
``statistics``, ``close``) and several backends: ``serial``, ``thread``,
``process`` (NumPy arrays through shared memory; dead workers noticed and their
work retried) and ``auto`` (measures the function; the rule it applies, shared by
every part of weft that picks a backend, is :mod:`weft.exec._policy`)::

    with weft.exec.create("process", workers=4) as ex:
        for y in ex.map(f, xs, ordered=False):
            ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from weft.exec._base import Executor, ExecutorStatistics
from weft.exec._registry import available_backends, create, register

if TYPE_CHECKING:
    from weft.exec._auto import AutoExecutor, Calibration, calibrate
    from weft.exec._process import ProcessExecutor, ProcessStatistics
    from weft.exec._serial import SerialExecutor
    from weft.exec._thread import ThreadExecutor
    from weft.exec._wire import RemoteTraceback

__all__ = [
    "AutoExecutor",
    "Calibration",
    "Executor",
    "ExecutorStatistics",
    "ProcessExecutor",
    "ProcessStatistics",
    "RemoteTraceback",
    "SerialExecutor",
    "ThreadExecutor",
    "available_backends",
    "calibrate",
    "create",
    "register",
]

_LAZY = {
    "AutoExecutor": "weft.exec._auto",
    "Calibration": "weft.exec._auto",
    "calibrate": "weft.exec._auto",
    "ProcessExecutor": "weft.exec._process",
    "ProcessStatistics": "weft.exec._process",
    "RemoteTraceback": "weft.exec._wire",
    "SerialExecutor": "weft.exec._serial",
    "ThreadExecutor": "weft.exec._thread",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'weft.exec' has no attribute {name!r}")
