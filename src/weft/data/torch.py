"""torch interop: a pipeline as a torch ``IterableDataset``, and batches as tensors.

Importing this module imports torch; ``import weft.data`` never does.

    loader = torch.utils.data.DataLoader(as_iterable_dataset(pipe), batch_size=None)

weft already runs the pipeline's workers, so use ``num_workers=0`` (the default) and
``batch_size=None`` (batches come from ``.batch()``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from weft.data._nested import map_leaves
from weft.data._pipeline import Pipeline
from weft.errors import ConfigError

__all__ = ["PipelineDataset", "as_iterable_dataset", "to_tensors"]

log = logging.getLogger(__name__)
_warned_pin = False


def _pin(t: torch.Tensor) -> torch.Tensor:
    global _warned_pin
    try:
        return t.pin_memory()
    except RuntimeError as exc:
        if not _warned_pin:
            _warned_pin = True
            log.warning("weft: pin_memory=True but memory cannot be pinned here (%s); tensors stay unpinned", exc)
        return t


def to_tensors(batch: Any, *, pin_memory: bool = False) -> Any:
    """NumPy arrays (at any depth of dicts, namedtuples, tuples and lists) as tensors,
    sharing memory.

    Numbers become 0-d tensors; strings and other objects are left as they are.
    ``pin_memory=True`` pins each tensor (page-locked, for fast copies to a GPU); where
    no accelerator exists the tensors stay unpinned and a warning is logged once.
    """

    def leaf(value: Any) -> Any:
        if isinstance(value, np.generic):
            value = np.asarray(value)
        if isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                return value
            array = value if value.flags.writeable else value.copy()
            t = torch.from_numpy(np.ascontiguousarray(array))
            return _pin(t) if pin_memory else t
        if isinstance(value, torch.Tensor):
            return _pin(value) if pin_memory else value
        return value

    return map_leaves(batch, leaf)


class PipelineDataset(IterableDataset):  # type: ignore[misc,type-arg]
    """A torch ``IterableDataset`` over a weft pipeline (optionally yielding tensors).

    ``state_dict()`` / ``load_state_dict()`` pass through to the pipeline, so
    ``torchdata.stateful_dataloader.StatefulDataLoader`` can checkpoint it.
    """

    def __init__(self, pipe: Pipeline, *, tensors: bool = True, pin_memory: bool = False) -> None:
        super().__init__()
        self.pipe = pipe
        self.tensors = tensors
        self.pin_memory = pin_memory

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        if info is not None and info.num_workers > 1:
            raise ConfigError("weft runs the pipeline's workers itself: use DataLoader(num_workers=0, "
                              "batch_size=None) and set workers= on .map() instead")
        for item in self.pipe:
            yield to_tensors(item, pin_memory=self.pin_memory) if self.tensors else item

    def state_dict(self) -> dict[str, Any]:
        return self.pipe.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pipe.load_state_dict(state)


def as_iterable_dataset(pipe: Pipeline, *, tensors: bool = True, pin_memory: bool = False) -> PipelineDataset:
    """``pipe`` as a torch ``IterableDataset``; use with ``DataLoader(ds, batch_size=None)``."""
    if not isinstance(pipe, Pipeline):
        raise ConfigError(f"as_iterable_dataset needs a weft.data Pipeline, got {type(pipe).__name__}")
    return PipelineDataset(pipe, tensors=tensors, pin_memory=pin_memory)
