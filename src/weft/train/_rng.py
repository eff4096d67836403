"""Random number generator states: captured into a checkpoint, put back on resume.

A job resumes exactly only if its random draws continue where they stopped: dropout
masks, augmentations, sampling. :func:`capture` reads the process-wide generators
(Python's ``random``, NumPy's legacy ``np.random``, torch's CPU generator and, once
CUDA is initialised, every CUDA device's) plus any generator objects the caller
names (``np.random.Generator``, ``np.random.RandomState``, ``random.Random``,
``torch.Generator``); :func:`restore` sets them all back. The states are plain values
and arrays, stored by the checkpoint's codec (no pickle).
"""

from __future__ import annotations

import random
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from weft.errors import CheckpointError, ConfigError

__all__ = ["capture", "generators_of", "restore"]

_NUMPY_GENERATOR, _NUMPY_RANDOMSTATE, _PYTHON_RANDOM, _TORCH_GENERATOR = (
    "numpy.Generator", "numpy.RandomState", "random.Random", "torch.Generator")


def _kind(generator: object) -> str | None:
    if isinstance(generator, np.random.Generator):
        return _NUMPY_GENERATOR
    if isinstance(generator, np.random.RandomState):
        return _NUMPY_RANDOMSTATE
    if isinstance(generator, random.Random):
        return _PYTHON_RANDOM
    if type(generator).__module__.startswith("torch") and type(generator).__name__ == "Generator":
        return _TORCH_GENERATOR
    return None


def generators_of(rng: object) -> list[Any] | None:
    """What ``save(rng=...)`` asks for: None (no RNG state), or the generator objects to
    capture beside the process-wide ones (``rng=True``: none)."""
    if rng is None or rng is False:
        return None
    if rng is True:
        return []
    items = list(rng) if isinstance(rng, list | tuple) else [rng]
    for item in items:
        if _kind(item) is None:
            raise ConfigError(f"rng= takes True, a generator or a list of generators (np.random.Generator, "
                              f"np.random.RandomState, random.Random, torch.Generator); got "
                              f"{type(item).__name__}")
    return items


def capture(generators: Sequence[Any]) -> dict[str, Any]:
    """The states of the process-wide generators and of ``generators`` (in order)."""
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(legacy=False)}
    torch = sys.modules.get("torch")  # only if the job uses torch: never imported for this
    if torch is not None:
        state["torch"] = torch.get_rng_state()
        cuda = getattr(torch, "cuda", None)
        if cuda is not None and cuda.is_available() and cuda.is_initialized():
            state["torch_cuda"] = cuda.get_rng_state_all()
    state["generators"] = [_state_of(g) for g in generators]
    return state


def _state_of(generator: Any) -> dict[str, Any]:
    kind = _kind(generator)
    if kind == _NUMPY_GENERATOR:
        return {"type": kind, "state": generator.bit_generator.state}
    if kind == _NUMPY_RANDOMSTATE:
        return {"type": kind, "state": generator.get_state(legacy=False)}
    if kind == _PYTHON_RANDOM:
        return {"type": kind, "state": generator.getstate()}
    return {"type": kind, "state": generator.get_state()}


def restore(state: Mapping[str, Any], generators: Sequence[Any], *, source: str) -> None:
    """Put back the process-wide states in ``state`` and those of ``generators``, which
    must be the same number and kinds of generators as were saved."""
    saved = state.get("generators", [])
    if len(saved) != len(generators):
        raise ConfigError(f"the checkpoint {source} holds the states of {len(saved)} generator(s) "
                          f"({', '.join(s['type'] for s in saved) or 'none'}) but restore_rng() got "
                          f"{len(generators)}: pass the generators given to save(rng=...), in order")
    for i, (entry, generator) in enumerate(zip(saved, generators, strict=True)):
        if _kind(generator) != entry["type"]:
            raise ConfigError(f"generator {i} passed to restore_rng() is a {type(generator).__name__} but a "
                              f"{entry['type']} was saved there ({source})")
    try:
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        if "torch" in state:
            import torch

            torch.set_rng_state(_torch_bytes(state["torch"]))
            if "torch_cuda" in state and torch.cuda.is_available():
                torch.cuda.set_rng_state_all([_torch_bytes(s) for s in state["torch_cuda"]])
        for entry, generator in zip(saved, generators, strict=True):
            kind, value = entry["type"], entry["state"]
            if kind == _NUMPY_GENERATOR:
                generator.bit_generator.state = value
            elif kind == _NUMPY_RANDOMSTATE:
                generator.set_state(value)
            elif kind == _PYTHON_RANDOM:
                generator.setstate(value)
            else:
                generator.set_state(_torch_bytes(value))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"the random generator states in {source} do not load ({exc!r}); "
                              "restore an earlier step") from None


def _torch_bytes(value: Any) -> Any:
    import torch

    return value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))
