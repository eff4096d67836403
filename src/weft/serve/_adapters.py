"""Model adapters behind a registry: a spec string or object becomes a loaded ``Model``.

Built in: ``python`` (``path/to/file.py:Name`` or ``package.module:Name``; a class, an
instance or a function), ``onnx`` (a ``.onnx`` file, onnxruntime) and ``torchscript``
(a ``.pt`` file, torch). A new adapter is one module plus one :func:`register_adapter`
call; ``name=spec`` overrides the served name.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from weft.errors import ConfigError, ModelError
from weft.serve._failures import user_error
from weft.serve._types import Model, TensorSpec

__all__ = ["GilDeclaration", "LoadedModel", "adapter_names", "declared_gil", "load_model", "model_label",
           "register_adapter", "split_name"]

Loader = Callable[[Any], Model]
Matcher = Callable[[Any], bool]
#: Whether what an adapter loads releases the GIL: a fixed answer, or one per spec.
ReleasesGil = bool | Callable[[Any], bool]


@dataclass(frozen=True)
class _Adapter:
    name: str
    platform: str
    matches: Matcher
    loader: str | Loader
    releases_gil: ReleasesGil


_registry: list[_Adapter] = []


def register_adapter(name: str, *, matches: Matcher, loader: str | Loader, platform: str | None = None,
                     first: bool = True, releases_gil: ReleasesGil = False) -> None:
    """Add an adapter; ``loader`` is a callable or a lazily imported ``"module:function"``.

    ``releases_gil`` says whether the models it loads compute without the GIL (native
    runtimes do), or is a function of the spec that says it; it decides whether
    ``backend="auto"`` serves them on threads or processes when the GIL is on.
    """
    global _registry
    adapter = _Adapter(name, platform or name, matches, loader, releases_gil)
    rest = [a for a in _registry if a.name != name]
    _registry = [adapter, *rest] if first else [*rest, adapter]


def adapter_names() -> list[str]:
    return [a.name for a in _registry]


def _suffix(*suffixes: str) -> Matcher:
    return lambda spec: isinstance(spec, str) and spec.lower().endswith(suffixes)


def _python_releases_gil(target: Any) -> bool:
    """A Python model releases the GIL only if it says so (``releases_gil = True``)."""
    if isinstance(target, str):
        from weft.serve._python_adapter import resolve

        target = resolve(target)
    return bool(getattr(target, "releases_gil", False))


register_adapter("python", matches=lambda spec: not isinstance(spec, str) or ":" in spec,
                 loader="weft.serve._python_adapter:load", platform="python", releases_gil=_python_releases_gil)
register_adapter("torchscript", matches=_suffix(".pt", ".pth", ".ts"),
                 loader="weft.serve._torchscript_adapter:load", platform="pytorch_libtorch", releases_gil=True)
register_adapter("onnx", matches=_suffix(".onnx"), loader="weft.serve._onnx_adapter:load",
                 platform="onnxruntime_onnx", releases_gil=True)

_NAME = re.compile(r"^([A-Za-z0-9_.\-]+)=(.+)$")


def split_name(spec: Any) -> tuple[str | None, Any]:
    """``"mlp=examples/mlp.py:Model"`` -> ("mlp", "examples/mlp.py:Model")."""
    if isinstance(spec, str):
        match = _NAME.match(spec)
        if match:
            return match.group(1), match.group(2)
    return None, spec


@dataclass(eq=False)
class LoadedModel:
    """A model ready to predict, with its served name and declared tensors."""

    name: str
    platform: str
    model: Model
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            result = self.model.predict(inputs)
        except Exception as exc:
            raise user_error(f"model {self.name!r} failed to predict: {type(exc).__name__}: {exc}", exc) from exc
        if not isinstance(result, dict):
            raise ModelError(f"model {self.name!r}: predict must return a dict of arrays, got {type(result).__name__}")
        return {name: _numpy(value) for name, value in result.items()}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "platform": self.platform,
                "inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs]}


def _numpy(value: Any) -> Any:
    """A framework tensor (torch, ...) returned by predict, as a NumPy array."""
    if isinstance(value, np.ndarray):
        return value
    if callable(getattr(value, "detach", None)) and callable(getattr(value, "cpu", None)):  # torch
        return np.asarray(value.detach().cpu().numpy())
    if hasattr(value, "__array__") or isinstance(value, np.generic):
        return np.asarray(value)
    return value  # the batcher names it in its error


def _specs(value: Any, what: str, where: str) -> tuple[TensorSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, Sequence) or not all(isinstance(t, TensorSpec) for t in value):
        raise ConfigError(f"model {where}: '{what}' must be a list of weft.serve.TensorSpec")
    return tuple(value)


def _adapter_for(target: Any) -> _Adapter:
    for adapter in _registry:
        if adapter.matches(target):
            return adapter
    raise ConfigError(f"no model adapter understands {target!r}: use path/to/file.py:Name, "
                      f"package.module:Name, a .onnx or a .pt file (adapters: {adapter_names()})")


class GilDeclaration(NamedTuple):
    """What a model spec declares about the GIL, before the model is loaded."""

    model: str  # for messages: the name given with name=spec, else the spec or the object's name
    releases_gil: bool


def declared_gil(spec: Any) -> GilDeclaration:
    """Whether the model ``spec`` names releases the GIL, asking its adapter (no loading)."""
    _, target = split_name(spec)
    adapter = _adapter_for(target)
    releases = adapter.releases_gil
    if callable(releases):
        try:
            releases = releases(target)
        except (ConfigError, ModelError):
            raise
        except Exception as exc:  # the model's own module failed to import
            raise ModelError(f"model {target!r} failed to load: {type(exc).__name__}: {exc}") from exc
    return GilDeclaration(model_label(spec), bool(releases))


def model_label(spec: Any) -> str:
    """How ``spec``'s model is named before it is loaded: the name given with name=spec,
    else what the user wrote, or the object's own name."""
    name, target = split_name(spec)
    if name is None:
        name = target if isinstance(target, str) else (
            getattr(target, "name", None) or getattr(target, "__name__", None) or type(target).__name__)
    return str(name)


def load_model(spec: Any) -> LoadedModel:
    """Resolve ``spec`` through the first matching adapter, then call ``load()`` once."""
    name, target = split_name(spec)
    adapter = _adapter_for(target)
    loader = adapter.loader
    if isinstance(loader, str):
        module, _, attr = loader.partition(":")
        loader = getattr(importlib.import_module(module), attr)
    try:
        model = loader(target)
        model.load()
    except (ConfigError, ModelError):
        raise
    except Exception as exc:
        raise user_error(f"model {target!r} failed to load: {type(exc).__name__}: {exc}", exc) from exc
    served = name or getattr(model, "name", None)
    if not isinstance(served, str) or not served:
        raise ConfigError(f"model {target!r} has no usable name: set a 'name' attribute or serve it as name=spec")
    platform = getattr(model, "platform", None) or adapter.platform
    return LoadedModel(served, str(platform), model, _specs(getattr(model, "inputs", None), "inputs", served),
                       _specs(getattr(model, "outputs", None), "outputs", served))
