"""``weft demo``: load, train and serve a small image classifier, end to end, offline.

1. **Data** (:mod:`weft.demo._dataset`): draws a labelled dataset (circle / square /
   triangle on noise, 32x32 PNG files) and streams it through a ``weft.data`` pipeline
   (decode + augment map, batch, prefetch).
2. **Train** (:mod:`weft.demo._model`): a NumPy MLP, each step ``timed``; a checkpoint
   per epoch (background saves) and every metric in the ``Tracker``. Run it again and
   it resumes from its last checkpoint (``--epochs`` more than before continues).
3. **Serve**: the trained model behind the weft V2 server on a background thread,
   queried by concurrent ``weft.serve.Client`` requests that the server batches.

:mod:`weft.demo._run` runs the three phases; :mod:`weft.demo._report` prints what ran,
on which backend and why (from the components' ``statistics()``), its throughput and
the accuracy; :mod:`weft.demo._cli` adds the ``weft demo`` command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from weft.demo._dataset import load_example
    from weft.demo._model import DemoModel
    from weft.demo._run import DemoSize, run_demo

__all__ = ["DemoModel", "DemoSize", "load_example", "run_demo"]

# NumPy and Pillow load on first use: `weft --help` imports this package to register
# `weft demo`, and must stay fast.
_LAZY = {
    "DemoModel": "weft.demo._model",
    "DemoSize": "weft.demo._run",
    "load_example": "weft.demo._dataset",
    "run_demo": "weft.demo._run",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'weft.demo' has no attribute {name!r}")
