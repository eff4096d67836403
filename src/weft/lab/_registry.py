"""The experiments: every public module in ``weft.lab.experiments`` is one.

A module defines ``CLAIM`` (a :class:`~weft.lab.Claim`) and either
``measure(ctx)``, run inside a fresh subprocess of each interpreter, or
``combine(runs)``, which derives a result from other experiments' runs on several
interpreters (e.g. single-thread cost of the free-threaded build). Adding an
experiment is adding a module.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from weft.errors import ConfigError
from weft.lab._claim import Claim

__all__ = ["available_experiments", "claim_of", "load"]

_PACKAGE = "weft.lab.experiments"


def available_experiments() -> list[str]:
    """Names of every experiment, sorted."""
    package = importlib.import_module(_PACKAGE)
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__)
                  if not m.name.startswith("_"))


def load(name: str) -> ModuleType:
    """The experiment's module; ``ConfigError`` naming the known ones if there is none."""
    names = available_experiments()
    if name not in names:
        raise ConfigError(f"unknown lab experiment {name!r}; known: {', '.join(names)}")
    module = importlib.import_module(f"{_PACKAGE}.{name}")
    claim = getattr(module, "CLAIM", None)
    if not isinstance(claim, Claim) or claim.name != name:
        raise ConfigError(f"experiment module {module.__name__} must define CLAIM = Claim(name={name!r}, ...)")
    if hasattr(module, "measure") == hasattr(module, "combine"):
        raise ConfigError(f"experiment module {module.__name__} must define exactly one of measure(ctx) or combine(runs)")
    return module


def claim_of(name: str) -> Claim:
    claim: Claim = load(name).CLAIM
    return claim

