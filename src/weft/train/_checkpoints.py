"""Crash-safe checkpoints: safetensors files plus an atomically replaced JSON manifest.

:class:`Checkpoints` is what a training loop uses: it turns tensors (NumPy or torch)
into a safetensors file, hands the file to the directory's
:class:`~weft.train._checkpoint_store.CheckpointStore` (manifest, lock, retention,
garbage removal) and restores checkpoints with their sha256 checked. Saves can run in
the background, in order, on one weft worker thread.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np

from weft._checks import check_int, check_one_of
from weft.errors import CheckpointError, ConfigError
from weft.train._atomic import staged_write
from weft.train._checkpoint_store import MANIFEST, CheckpointInfo, CheckpointStore, Retention
from weft.train._safetensors import BF16, load_safetensors, write_safetensors

__all__ = ["Checkpoint", "CheckpointInfo", "CheckpointSave", "CheckpointStatistics", "Checkpoints"]

logger = logging.getLogger(__name__)

#: CheckpointInfo fields a CheckpointSave still forwards (deprecated) to its info.
_FORWARDED = frozenset({"path", "sha256", "size", "created", "metrics", "config"})


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """A restored checkpoint: its tensors and what was saved with them."""

    info: CheckpointInfo
    tensors: dict[str, Any]

    @property
    def step(self) -> int:
        return self.info.step

    @property
    def metrics(self) -> Mapping[str, float]:
        return self.info.metrics

    @property
    def config(self) -> Mapping[str, Any]:
        return self.info.config


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
            raise _failed(self._directory, exc) from exc

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


def _failed(directory: Path, error: BaseException) -> CheckpointError:
    return CheckpointError(f"a background checkpoint save in {str(directory)!r} failed: {error}")


def _is_torch(value: object) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def _to_numpy(name: str, value: Any, copy: bool) -> Any:
    if _is_torch(value):
        import torch

        tensor = value.detach().cpu().contiguous()
        if tensor.dtype == torch.bfloat16:
            bits = tensor.view(torch.int16).numpy().view(np.uint16)
            return (BF16, bits.copy() if copy else bits)
        array = tensor.numpy()
        return array.copy() if copy else array
    if isinstance(value, np.ndarray | np.generic):
        return np.array(value, copy=True) if copy else value
    raise ConfigError(f"checkpoint tensor {name!r} is a {type(value).__name__}; save NumPy arrays or torch "
                      "tensors (put plain values in config= or metrics=)")


def _json_safe(name: str, value: Mapping[str, Any] | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a mapping, got {type(value).__name__}")
    try:
        return dict(json.loads(json.dumps(dict(value), allow_nan=True)))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be JSON-serialisable (no pickle is used): {exc}") from None


class Checkpoints:
    """A directory of checkpoints with retention, integrity checks and optional background saves.

    ``keep_last`` most recent steps are kept (None: all), plus the ``keep_best`` best by
    ``metric`` (``mode="min"`` or ``"max"``). ``save()`` returns a :class:`CheckpointSave`
    either way; with ``background=True`` it returns as soon as the tensors are copied and
    the write happens on one weft worker thread, in order (``wait()`` flushes).
    """

    def __init__(self, directory: str | os.PathLike[str], *, keep_last: int | None = 3, keep_best: int = 0,
                 metric: str | None = None, mode: Literal["min", "max"] = "min", background: bool = False,
                 durable: bool = True) -> None:
        Retention(keep_last=keep_last, keep_best=keep_best, metric=metric, mode=mode)  # checks the values
        self.directory = Path(directory)
        self.keep_last, self.keep_best, self.metric, self.mode = keep_last, keep_best, metric, mode
        self.background, self.durable = background, durable
        self._store = CheckpointStore(self.directory, durable=durable)
        self._stats_lock = threading.Lock()
        self._executor: Any = None
        self._pending: builtins.list[Future[CheckpointInfo]] = []
        self._saves = self._restores = self._removed = self._bytes_written = self._bytes_read = 0
        self._save_seconds = self._blocked_seconds = self._last_save_seconds = 0.0

    def _retention(self) -> Retention:
        # built per use from the attributes, which stay plain (and settable) as they always were
        return Retention(keep_last=self.keep_last, keep_best=self.keep_best, metric=self.metric, mode=self.mode)

    # -- reading -------------------------------------------------------------------
    def checkpoints(self) -> builtins.list[CheckpointInfo]:
        """Every checkpoint in the manifest, oldest step first."""
        return sorted(self._store.read(), key=lambda i: i.step)

    def list(self) -> builtins.list[CheckpointInfo]:
        """Deprecated name of :meth:`checkpoints` (it shadowed the builtin ``list``)."""
        warnings.warn("Checkpoints.list() is deprecated; use Checkpoints.checkpoints()",
                      DeprecationWarning, stacklevel=2)
        return self.checkpoints()

    def latest(self) -> CheckpointInfo | None:
        entries = self.checkpoints()
        return entries[-1] if entries else None

    def best(self) -> CheckpointInfo | None:
        """The checkpoint with the best ``metric`` (None if none has it)."""
        if not self.metric:
            raise ConfigError("best() needs Checkpoints(..., metric='name')")
        ranked = self._retention().ranked(self.checkpoints())
        return ranked[0] if ranked else None

    def restore(self, step: int | None = None, *, framework: Literal["numpy", "torch"] = "numpy",
                verify: bool = True) -> Checkpoint:
        """Load the checkpoint of ``step`` (default: the latest), checking its sha256.

        Raises :class:`CheckpointError` naming the file if it is missing, truncated or
        corrupted. ``framework="torch"`` returns torch tensors (bfloat16 included).
        """
        check_one_of("framework", framework, ("numpy", "torch"))
        entries = self.checkpoints()
        if not entries:
            raise CheckpointError(f"no checkpoint in {str(self.directory)!r} (no {MANIFEST} or it is empty)")
        if step is None:
            info = entries[-1]
        else:
            found = [e for e in entries if e.step == step]
            if not found:
                raise CheckpointError(f"no checkpoint for step {step} in {str(self.directory)!r}; "
                                      f"saved steps: {[e.step for e in entries]}")
            info = found[0]
        raw, _metadata = load_safetensors(info.path, sha256=info.sha256 if verify else None, size=info.size)
        tensors: dict[str, Any] = {}
        for name, (tag, array) in raw.items():
            if framework == "torch":
                import torch

                tensors[name] = (torch.from_numpy(array.view(np.int16)).view(torch.bfloat16) if tag == BF16
                                 else torch.from_numpy(array))
            elif tag == BF16:
                raise ConfigError(f"tensor {name!r} in {str(info.path)!r} is bfloat16, which NumPy lacks; "
                                  "restore with framework='torch'")
            else:
                tensors[name] = array
        with self._stats_lock:
            self._restores += 1
            self._bytes_read += info.size
        return Checkpoint(info=info, tensors=tensors)

    # -- writing -------------------------------------------------------------------
    def save(self, step: int, tensors: Mapping[str, Any], *, metrics: Mapping[str, float] | None = None,
             config: Mapping[str, Any] | None = None, background: bool | None = None) -> CheckpointSave:
        """Save ``tensors`` (name -> NumPy array or torch tensor) for ``step``.

        Returns a :class:`CheckpointSave`: ``.info`` (or ``.result()``) is the
        :class:`CheckpointInfo` once written. Without background saving the write is done
        when this returns; with it, the call blocks only while the tensors are copied. A
        failed background save is raised by its handle, the next ``save()`` and ``wait()``.
        """
        started = time.perf_counter()
        if isinstance(step, np.integer):
            step = int(step)
        check_int("step", step, minimum=0)
        if not isinstance(tensors, Mapping):
            raise ConfigError(f"tensors must be a mapping of name -> array, got {type(tensors).__name__}")
        retention = self._retention()
        use_background = self.background if background is None else background
        self._raise_failed()
        arrays = {name: _to_numpy(name, value, copy=use_background) for name, value in tensors.items()}
        meta = _json_safe("metrics", metrics)
        conf = _json_safe("config", config)
        try:
            if not use_background:
                done: Future[CheckpointInfo] = Future()
                done.set_result(self._write(step, arrays, meta, conf, retention))
                return CheckpointSave(step, done, self.directory)
            future: Future[CheckpointInfo] = self._worker().submit(self._write, step, arrays, meta, conf,
                                                                   retention)
            with self._stats_lock:
                self._pending.append(future)
            return CheckpointSave(step, future, self.directory)
        finally:
            with self._stats_lock:
                self._blocked_seconds += time.perf_counter() - started

    def _worker(self) -> Any:
        with self._stats_lock:
            if self._executor is None:
                import weft.exec

                self._executor = weft.exec.create("thread", workers=1, reason="background checkpoint saves, in order")
            return self._executor

    def _raise_failed(self) -> None:
        with self._stats_lock:
            done = [f for f in self._pending if f.done()]
            self._pending = [f for f in self._pending if not f.done()]
        for future in done:
            error = future.exception()
            if error is not None:
                raise _failed(self.directory, error) from error

    def wait(self) -> None:
        """Block until every background save has finished; raise the first failure."""
        with self._stats_lock:
            pending = builtins.list(self._pending)
        for future in pending:
            future.exception()
        self._raise_failed()

    def _write(self, step: int, arrays: dict[str, Any], metrics: dict[str, Any], config: dict[str, Any],
               retention: Retention) -> CheckpointInfo:
        started = time.perf_counter()
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._store.new_path(step)
        header = {"weft": json.dumps({"step": step, "metrics": metrics, "config": config})}
        with staged_write(path, durable=self.durable) as (f, staged):
            sha, size = write_safetensors(f, arrays, header)
        info = CheckpointInfo(step=step, path=path, sha256=sha, size=size, created=time.time(),
                              metrics=metrics, config=config)
        removed = self._store.add(info, staged, retention)
        elapsed = time.perf_counter() - started
        with self._stats_lock:
            self._saves += 1
            self._removed += removed
            self._bytes_written += size
            self._save_seconds += elapsed
            self._last_save_seconds = elapsed
        logger.debug("saved checkpoint step %d to %s (%d bytes, %.3f s)", step, path, size, elapsed)
        return info

    # -- lifecycle -----------------------------------------------------------------
    def statistics(self) -> CheckpointStatistics:
        with self._stats_lock:
            return CheckpointStatistics(
                saves=self._saves, restores=self._restores, removed=self._removed,
                bytes_written=self._bytes_written, bytes_read=self._bytes_read,
                save_seconds=self._save_seconds, blocked_seconds=self._blocked_seconds,
                last_save_seconds=self._last_save_seconds,
                pending=sum(1 for f in self._pending if not f.done()))

    def close(self) -> None:
        """Finish pending background saves and stop the worker thread."""
        try:
            self.wait()
        finally:
            with self._stats_lock:
                executor, self._executor = self._executor, None
            if executor is not None:
                executor.close(cancel=False)

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Checkpoints({str(self.directory)!r}, keep_last={self.keep_last}, keep_best={self.keep_best}, "
                f"metric={self.metric!r}, mode={self.mode!r}, background={self.background})")
