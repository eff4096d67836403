"""Nested job state <-> (flat tensors, a JSON structure), with no pickle.

A checkpoint holds whatever a training job needs to continue: ``{"model":
m.state_dict(), "opt": opt.state_dict(), "epoch": 3}``, an optimizer's nested dicts
of tensors, ints, floats, lists, tuples and None included. :class:`Encoder` splits such
a value into

- the tensors (NumPy arrays and scalars, torch tensors), each under a flattened name
  (``model/fc.weight``, ``opt/state/0/exp_avg``) that becomes a safetensors entry, and
- a JSON *structure* describing everything else exactly: dict key order and key types
  (torch optimizers key their state by int), ``OrderedDict`` (with torch's
  ``_metadata``), tuple vs list, int vs float (NaN and infinities included), empty
  containers, and which entry each tensor is.

:func:`decode` rebuilds the value from the two. In the structure, JSON scalars
(null, booleans, numbers, strings) stand for themselves and every other node is a
one-key object: ``{"tensor": name, "kind": ...}``, ``{"dict": [[key, value], ...]}``,
``{"odict": [...], "meta": ...}``, ``{"list": [...]}`` or ``{"tuple": [...]}``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from weft.errors import CheckpointError, ConfigError
from weft.train._safetensors import BF16

__all__ = ["Encoder", "decode", "from_array", "is_tensor", "to_array"]

#: The separator of flattened entry names (``model/fc.weight``): torch parameter names
#: already use dots.
SEPARATOR = "/"
#: How deep a state may nest: far beyond any real state, and it stops a cycle.
_MAX_DEPTH = 100
# tensor kinds, recorded so a restore gives back what was saved
_NUMPY, _NUMPY_SCALAR, _TORCH = "numpy", "numpy-scalar", "torch"


def is_tensor(value: object) -> bool:
    """A NumPy array or scalar, or a torch tensor (torch is not imported to tell)."""
    return isinstance(value, np.ndarray | np.generic) or _is_torch(value)


def _is_torch(value: object) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def to_array(name: str, value: Any, *, copy: bool) -> Any:
    """A tensor as the safetensors writer takes it: a NumPy array, or ``(BF16, uint16
    bits)`` for torch bfloat16 (NumPy has no bfloat16); ``copy`` detaches it from memory
    the caller may change after a background save returns."""
    if _is_torch(value):
        import torch

        tensor = value.detach().cpu().contiguous()
        if tensor.dtype == torch.bfloat16:
            bits = tensor.view(torch.int16).numpy().view(np.uint16)
            return (BF16, bits.copy() if copy else bits)
        try:
            array = tensor.numpy()
        except (TypeError, RuntimeError) as exc:
            raise ConfigError(f"checkpoint tensor {name!r} cannot be saved: {exc}") from None
        return array.copy() if copy else array
    if isinstance(value, np.ndarray | np.generic):
        return np.array(value, copy=True) if copy else value
    raise ConfigError(f"checkpoint tensor {name!r} is a {type(value).__name__}; save NumPy arrays or torch "
                      "tensors")


def from_array(name: str, stored: tuple[str, np.ndarray], *, framework: str, source: str) -> Any:
    """A stored ``(dtype tag, array)`` as a NumPy array (``framework="numpy"``) or a torch
    tensor (``"torch"``, bfloat16 included)."""
    tag, array = stored
    if framework == "torch":
        import torch

        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16) if tag == BF16 else torch.from_numpy(array)
    if tag == BF16:
        raise ConfigError(f"tensor {name!r} in {source!r} is bfloat16, which NumPy lacks; "
                          "restore with framework='torch'")
    return array


def _where(path: tuple[Any, ...]) -> str:
    return SEPARATOR.join(str(p) for p in path) or "<top>"


class Encoder:
    """Encodes values into one set of entries: ``encode(value, prefix=...)`` returns a
    value's structure, and ``tensors`` collects every entry (their names are unique
    across all the values encoded). Each tensor passes through ``to_array(name, tensor)``,
    which converts it and, for background saves, copies it."""

    def __init__(self, to_array: Callable[[str, Any], Any]) -> None:
        self.prefix = ""
        self.to_array = to_array
        self.tensors: dict[str, Any] = {}

    def encode(self, value: Any, *, prefix: str = "") -> Any:
        self.prefix = prefix
        return self.node(value, ())

    def name_for(self, path: tuple[Any, ...]) -> str:
        name = self.prefix + SEPARATOR.join(str(p) for p in path)
        if name in self.tensors or not name or name == "__metadata__":
            # two paths that flatten alike ({"a/b": x, "a": {"b": y}}): the structure records
            # the real name, so any unused one will do
            n = 1
            while f"{name}#{n}" in self.tensors:
                n += 1
            name = f"{name}#{n}"
        return name

    def node(self, value: Any, path: tuple[Any, ...]) -> Any:
        if len(path) > _MAX_DEPTH:
            raise ConfigError(f"checkpoint state nests deeper than {_MAX_DEPTH} levels at {_where(path)!r} "
                              "(a container that contains itself?)")
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, np.ndarray | np.generic) or _is_torch(value):
            name = self.name_for(path)
            self.tensors[name] = self.to_array(name, value)
            kind = _TORCH if _is_torch(value) else _NUMPY_SCALAR if isinstance(value, np.generic) else _NUMPY
            return {"tensor": name, "kind": kind}
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value)  # NaN and infinities included: the structure is written allow_nan
        if isinstance(value, Mapping):
            items = [[self.key(k, path), self.node(v, (*path, k))] for k, v in value.items()]
            if isinstance(value, OrderedDict):
                meta = getattr(value, "_metadata", None)  # torch's Module.state_dict() versions
                node: dict[str, Any] = {"odict": items}
                if isinstance(meta, Mapping):
                    node["meta"] = self.json_only(meta, (*path, "_metadata"))
                return node
            return {"dict": items}
        if isinstance(value, list):
            return {"list": [self.node(v, (*path, i)) for i, v in enumerate(value)]}
        if isinstance(value, tuple):
            return {"tuple": [self.node(v, (*path, i)) for i, v in enumerate(value)]}
        raise ConfigError(f"checkpoint state {_where(path)!r} is a {type(value).__name__}; a state holds "
                          "NumPy arrays, torch tensors, dicts, lists, tuples, str, int, float, bool and None "
                          "(no pickle is used: turn other objects into those, e.g. with their state_dict())")

    def key(self, key: Any, path: tuple[Any, ...]) -> Any:
        if key is None or (isinstance(key, bool | str | int | float) and not isinstance(key, np.generic)):
            return self.node(key, path)
        if isinstance(key, tuple):
            return {"tuple": [self.key(k, path) for k in key]}
        raise ConfigError(f"checkpoint state {_where(path)!r} has a key {key!r} of type {type(key).__name__}; "
                          "keys must be str, int, float, bool, None or tuples of those")

    def json_only(self, value: Any, path: tuple[Any, ...]) -> Any:
        before = len(self.tensors)
        node = self.node(value, path)
        if len(self.tensors) != before:
            raise ConfigError(f"checkpoint state {_where(path)!r} holds tensors where only plain values fit")
        return node


def decode(structure: Any, tensors: Mapping[str, tuple[str, np.ndarray]], *,
           convert: Callable[[str, tuple[str, np.ndarray], str], Any], source: str) -> Any:
    """Rebuild the value :class:`Encoder` described from the stored ``(dtype tag, array)``
    entries; ``convert(name, stored, kind)`` turns each tensor into what the caller wants
    (``kind`` says what was saved: "numpy" or "torch"); ``source`` names the file in errors."""

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"checkpoint file {source!r} has a malformed state structure ({what}); "
                               "restore an earlier step (Checkpoints.restore(step=...))")

    def node(n: Any, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise bad("nested too deep")
        if n is None or isinstance(n, bool | str | int | float):
            return n
        if not isinstance(n, dict) or len(n) not in (1, 2, 3):
            raise bad(f"unexpected node {n!r:.60}")
        if "tensor" in n:
            name = n["tensor"]
            if name not in tensors:
                raise bad(f"entry {name!r} is missing")
            kind = n.get("kind", _NUMPY)
            if kind == _NUMPY_SCALAR and tensors[name][0] != BF16:
                return tensors[name][1][()]
            return convert(name, tensors[name], kind)
        if "dict" in n or "odict" in n:
            items = n.get("dict", n.get("odict"))
            if not isinstance(items, list) or not all(isinstance(i, list) and len(i) == 2 for i in items):
                raise bad("a mapping is not a list of pairs")
            pairs = [(node(k, depth + 1), node(v, depth + 1)) for k, v in items]
            if "dict" in n:
                return dict(pairs)
            out: OrderedDict[Any, Any] = OrderedDict(pairs)
            if "meta" in n:
                out._metadata = node(n["meta"], depth + 1)  # type: ignore[attr-defined]
            return out
        if "list" in n:
            return [node(v, depth + 1) for v in _sequence(n["list"], bad)]
        if "tuple" in n:
            return tuple(node(v, depth + 1) for v in _sequence(n["tuple"], bad))
        raise bad(f"unknown node {sorted(n)}")

    return node(structure, 0)


def _sequence(value: Any, bad: Callable[[str], CheckpointError]) -> list[Any]:
    if not isinstance(value, list):
        raise bad("a sequence is not a list")
    return value
