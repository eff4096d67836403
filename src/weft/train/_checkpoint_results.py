"""What :class:`~weft.train.Checkpoints` hands back: a restored :class:`Checkpoint`, the
:class:`CheckpointSave` handle of a save (background or not), and its statistics."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from weft.errors import CheckpointError, ConfigError
from weft.train._checkpoint_store import CheckpointInfo

__all__ = ["Checkpoint", "CheckpointSave", "CheckpointStatistics", "failed"]

#: CheckpointInfo fields a CheckpointSave still forwards (deprecated) to its info.
_FORWARDED = frozenset({"path", "sha256", "size", "created", "metrics", "config"})


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """A restored checkpoint: the job state saved, and what was saved with it.

    ``state`` is the value passed to ``save()``, rebuilt exactly (nesting, key order and
    types, tuples, ints and floats); ``data`` is what ``save(data=...)`` kept (a
    pipeline's ``state_dict()``), or None; ``rng`` the random generator states of
    ``save(rng=...)``, or None: :meth:`restore_rng` puts them back.
    """

    info: CheckpointInfo
    state: dict[str, Any]
    data: Any = None
    rng: Mapping[str, Any] | None = field(default=None, repr=False)

    @property
    def step(self) -> int:
        return self.info.step

    @property
    def metrics(self) -> Mapping[str, float]:
        return self.info.metrics

    @property
    def config(self) -> Mapping[str, Any]:
        return self.info.config

    @property
    def tensors(self) -> dict[str, Any]:
        """Deprecated name of :attr:`state` (a state holds more than tensors)."""
        warnings.warn("Checkpoint.tensors is deprecated; use Checkpoint.state", DeprecationWarning, stacklevel=2)
        return self.state

    def restore_rng(self, *generators: Any) -> None:
        """Set the random generators back to their states at the save: Python's ``random``,
        NumPy's global ``np.random``, torch's (where saved), and ``generators``, the same
        generator objects (or new ones of the same kinds) given to ``save(rng=...)``, in order."""
        from weft.train import _rng

        if self.rng is None:
            raise ConfigError(f"the checkpoint of step {self.step} ({str(self.info.path)!r}) was saved without "
                              "random generator states: save with rng=True (or rng=generator)")
        _rng.restore(self.rng, generators, source=repr(str(self.info.path)))


@dataclass(frozen=True, kw_only=True)
class CheckpointStatistics:
    """Counters of one :class:`Checkpoints`; durations in seconds."""

    saves: int
    restores: int
    removed: int
    bytes_written: int
    bytes_read: int
    save_seconds: float      # writing, summed (on the background thread when background)
    blocked_seconds: float   # time callers spent inside save(), summed
    last_save_seconds: float
    pending: int


class CheckpointSave:
    """What :meth:`Checkpoints.save` returns, whether the save runs in the background or not.

    ``step`` is known at once; ``done()`` says whether the file and the manifest are
    written; ``result(timeout=None)`` (or the ``info`` property) waits for that and returns
    the :class:`CheckpointInfo`. A failed background save raises
    :class:`~weft.errors.CheckpointError` from ``result()``, and also from the next
    ``save()`` or ``wait()``, so it is never lost.
    """

    __slots__ = ("_directory", "_future", "step")

    def __init__(self, step: int, future: Future[CheckpointInfo], directory: Path) -> None:
        self.step = step
        self._future = future
        self._directory = directory

    def done(self) -> bool:
        return self._future.done()

    def result(self, timeout: float | None = None) -> CheckpointInfo:
        """The saved checkpoint's info, once written (waits at most ``timeout`` seconds)."""
        try:
            return self._future.result(timeout)
        except TimeoutError:
            raise CheckpointError(f"the checkpoint of step {self.step} in {str(self._directory)!r} is still "
                                  f"being written after {timeout} s; call result() again or "
                                  "Checkpoints.wait()") from None
        except Exception as exc:
            raise failed(self._directory, exc) from exc

    @property
    def info(self) -> CheckpointInfo:
        """``result()``: the saved checkpoint's info, waiting for the write if needed."""
        return self.result()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The error of a failed save, a CheckpointError whose ``__cause__`` is the original
        (None if it succeeded); waits like ``result()``."""
        try:
            self.result(timeout)
        except CheckpointError as exc:
            if not self._future.done():
                raise
            return exc
        return None

    def __getattr__(self, name: str) -> Any:
        # save() returned a CheckpointInfo when not in the background; keep `.path` & co.
        # working for one release
        if name in _FORWARDED:
            warnings.warn(f"Checkpoints.save() returns a CheckpointSave: use .info.{name} (or "
                          f".result().{name}) instead of .{name}", DeprecationWarning, stacklevel=2)
            return getattr(self.result(), name)
        raise AttributeError(f"'CheckpointSave' object has no attribute {name!r}")

    def __repr__(self) -> str:
        state = "done" if self._future.done() else "pending"
        return f"CheckpointSave(step={self.step}, {state})"


def failed(directory: Path, error: BaseException) -> CheckpointError:
    return CheckpointError(f"a background checkpoint save in {str(directory)!r} failed: {error}")

