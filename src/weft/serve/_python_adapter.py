"""The ``python`` adapter: a class, instance or function named by ``file.py:Name``/``module:Name``."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from typing import Any

import numpy as np

from weft.errors import ConfigError
from weft.serve._types import Model

__all__ = ["load", "resolve"]


def resolve(spec: str) -> Any:
    """The object ``spec`` names: ``path/to/file.py:Name`` or ``package.module:Name``."""
    where, sep, attr = spec.rpartition(":")
    if not sep or not where or not attr:
        raise ConfigError(f"model spec {spec!r} must look like path/to/file.py:Name or package.module:Name")
    if where.endswith(".py") or os.sep in where or "/" in where:
        path = os.path.abspath(where)
        if not os.path.isfile(path):
            raise ConfigError(f"model file {where!r} does not exist (from spec {spec!r})")
        digest = hashlib.sha1(path.encode()).hexdigest()[:10]
        module_name = f"weft_model_{os.path.splitext(os.path.basename(path))[0]}_{digest}"
        module = sys.modules.get(module_name)
        if module is None:
            loader_spec = importlib.util.spec_from_file_location(module_name, path)
            if loader_spec is None or loader_spec.loader is None:
                raise ConfigError(f"cannot import {where!r} as Python (from spec {spec!r})")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[module_name] = module
            try:
                loader_spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[module_name]
                raise
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise ConfigError(f"cannot import module {where!r} (from spec {spec!r}): {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{where!r} has no attribute {attr!r} (from spec {spec!r})") from None


class FunctionModel:
    """A plain ``predict(inputs) -> outputs`` function served as a model.

    Declared tensors come from the function's ``inputs``/``outputs`` attributes if set;
    without them any input names and shapes are accepted.
    """

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.name = getattr(fn, "name", None) or fn.__name__.lower()
        self.inputs = getattr(fn, "inputs", [])
        self.outputs = getattr(fn, "outputs", [])

    def load(self) -> None:
        pass

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result: dict[str, np.ndarray] = self.fn(inputs)
        return result


def load(spec: Any) -> Model:
    target = resolve(spec) if isinstance(spec, str) else spec
    if isinstance(target, type):
        instance = target()
        if not getattr(instance, "name", None):
            instance.name = target.__name__.lower()
        return _checked(instance, spec)
    if hasattr(target, "predict"):
        if not getattr(target, "name", None):
            target.name = type(target).__name__.lower()
        return _checked(target, spec)
    if callable(target):
        return FunctionModel(target)
    raise ConfigError(f"{spec!r} is neither a model class, a model instance nor a function")


def _checked(model: Any, spec: Any) -> Model:
    if not callable(getattr(model, "predict", None)):
        raise ConfigError(f"{spec!r} has no predict(inputs) method")
    if not callable(getattr(model, "load", None)):
        model.load = lambda: None
    checked: Model = model
    return checked
