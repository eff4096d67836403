"""Backends by name. A new backend is one module plus one ``register`` call."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from weft.errors import BackendUnavailable, ConfigError
from weft.exec._base import Executor

__all__ = ["available_backends", "create", "register"]

BackendFactory = Callable[..., Executor]

# name -> "module:Class", imported on first use so `import weft.exec` stays light
_BUILTIN: dict[str, str] = {
    "serial": "weft.exec._serial:SerialExecutor",
    "thread": "weft.exec._thread:ThreadExecutor",
    "process": "weft.exec._process:ProcessExecutor",
    "auto": "weft.exec._auto:AutoExecutor",
    "ray": "weft.exec._ray:RayExecutor",
    "dask": "weft.exec._dask:DaskExecutor",
}
_registered: dict[str, BackendFactory] = {}


def register(name: str, factory: BackendFactory) -> None:
    """Make ``create(name, ...)`` call ``factory(workers=..., **options)``."""
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(f"backend name must be an identifier, got {name!r}")
    if not callable(factory):
        raise ConfigError(f"backend {name!r}: factory must be callable as factory(workers=..., **options) "
                          f"and return an Executor, got {factory!r}")
    _registered[name] = factory


def available_backends() -> list[str]:
    return sorted(set(_BUILTIN) | set(_registered))


def _factory(name: str) -> BackendFactory:
    if name in _registered:
        return _registered[name]
    if name not in _BUILTIN:
        raise ConfigError(f"unknown backend {name!r}: use one of {available_backends()}")
    module_name, _, attr = _BUILTIN[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(f"backend {name!r} cannot be loaded here ({exc}); "
                                 f"install its extra, e.g. pip install 'weft[{name}]'") from exc
    factory: BackendFactory = getattr(module, attr)
    return factory


def create(backend: str = "auto", *, workers: int | None = None, **options: Any) -> Executor:
    """Create an executor. ``workers`` defaults to the usable cores."""
    if not isinstance(backend, str):
        raise ConfigError(f"backend must be a name such as 'thread' or 'process', got {backend!r}")
    if workers is None:
        from weft.runtime import usable_cores

        workers = usable_cores()
    return _factory(backend)(workers=workers, **options)
