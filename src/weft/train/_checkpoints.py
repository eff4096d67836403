"""Crash-safe checkpoints of a whole training job: safetensors files plus an atomically
replaced JSON manifest.

:class:`Checkpoints` is what a training loop uses: ``save(step, state, data=...,
rng=...)`` turns the job's state (nested dicts of NumPy or torch tensors and plain
values, see :mod:`weft.train._state_codec`), a data pipeline's position and the random
generators' states into ONE safetensors file, handed to the directory's
:class:`~weft.train._checkpoint_store.CheckpointStore` (manifest, lock, retention,
garbage removal); ``restore()`` reads it back with its sha256 checked, falling back to
the newest checkpoint that verifies. Saves can run in the background, in order, on one
weft worker thread; saves still pending when the interpreter exits are finished then
(for at most ``exit_timeout`` seconds), or reported.
"""

from __future__ import annotations

import atexit
import builtins
import concurrent.futures
import json
import logging
import os
import threading
import time
import warnings
import weakref
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np

from weft._checks import check_int, check_number, check_one_of
from weft.errors import CheckpointError, ConfigError
from weft.train import _rng
from weft.train._atomic import staged_write
from weft.train._checkpoint_results import Checkpoint, CheckpointSave, CheckpointStatistics, failed
from weft.train._checkpoint_store import MANIFEST, CheckpointInfo, CheckpointStore, Retention
from weft.train._safetensors import load_safetensors, write_safetensors
from weft.train._state_codec import Encoder, decode, from_array, to_array

__all__ = ["Checkpoint", "CheckpointInfo", "CheckpointSave", "CheckpointStatistics", "Checkpoints"]

logger = logging.getLogger(__name__)

#: The version of the "weft" header entry that describes the job state (1 had no
#: structure: every entry was a top-level tensor).
_HEADER_VERSION = 2
#: Entry names of the data pipeline's state and of the generator states: apart from the
#: job state's own names, which stay as given (``{"w": w}`` is the entry ``w``).
_DATA_PREFIX, _RNG_PREFIX = "__weft_data__/", "__weft_rng__/"
#: How long, by default, background saves still pending at interpreter exit may take to
#: finish before the exit goes on without them (with a warning).
EXIT_TIMEOUT = 60.0


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
    the write happens on one weft worker thread, in order: ``wait()``, ``close()`` or the
    end of a ``with`` block flush them, and so does the interpreter's exit, for at most
    ``exit_timeout`` seconds (a save still unfinished then is lost, with a warning).

    Opening a directory removes what crashed saves left in it (temporary files of
    processes that are gone) and rebuilds a deleted ``manifest.json`` from the files.
    """

    def __init__(self, directory: str | os.PathLike[str], *, keep_last: int | None = 3, keep_best: int = 0,
                 metric: str | None = None, mode: Literal["min", "max"] = "min", background: bool = False,
                 durable: bool = True, exit_timeout: float = EXIT_TIMEOUT) -> None:
        Retention(keep_last=keep_last, keep_best=keep_best, metric=metric, mode=mode)  # checks the values
        check_number("exit_timeout", exit_timeout, minimum=0.0)
        self.directory = Path(directory)
        self.keep_last, self.keep_best, self.metric, self.mode = keep_last, keep_best, metric, mode
        self.background, self.durable, self.exit_timeout = background, durable, float(exit_timeout)
        self._store = CheckpointStore(self.directory, durable=durable)
        self._stats_lock = threading.Lock()
        self._executor: Any = None
        self._pending: builtins.list[tuple[int, Future[CheckpointInfo]]] = []
        self._saves = self._restores = self._removed = self._bytes_written = self._bytes_read = 0
        self._save_seconds = self._blocked_seconds = self._last_save_seconds = 0.0
        self._store.clean()

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
        """Load the checkpoint of ``step``, checking its sha256; by default the latest
        one that loads: if the latest is missing, truncated or corrupted, the newest
        earlier one that verifies is restored instead, with a warning naming what failed.

        A given ``step`` that does not load raises :class:`CheckpointError` naming the
        file. Tensors come back as NumPy arrays, or as torch tensors with
        ``framework="torch"`` (needed for bfloat16, which NumPy lacks).
        """
        check_one_of("framework", framework, ("numpy", "torch"))
        entries = self.checkpoints()
        if not entries:
            raise CheckpointError(f"no checkpoint in {str(self.directory)!r} (no {MANIFEST} or it is empty)")
        if step is not None:
            found = [e for e in entries if e.step == step]
            if not found:
                raise CheckpointError(f"no checkpoint for step {step} in {str(self.directory)!r}; "
                                      f"saved steps: {[e.step for e in entries]}")
            return self._load(found[0], framework, verify)
        errors: builtins.list[CheckpointError] = []
        for info in reversed(entries):
            try:
                restored = self._load(info, framework, verify)
            except CheckpointError as exc:
                errors.append(exc)
                continue
            if errors:
                warnings.warn(f"restored step {info.step}, the newest checkpoint in {str(self.directory)!r} that "
                              f"loads; the later ones do not: {'; '.join(str(e) for e in errors)}",
                              RuntimeWarning, stacklevel=2)
            return restored
        raise CheckpointError(f"no checkpoint in {str(self.directory)!r} loads: "
                              f"{'; '.join(str(e) for e in errors)}") from errors[0]

    def _load(self, info: CheckpointInfo, framework: str, verify: bool) -> Checkpoint:
        raw, metadata = load_safetensors(info.path, sha256=info.sha256 if verify else None, size=info.size)
        source = str(info.path)
        try:
            header = json.loads(metadata.get("weft", "{}"))
            if not isinstance(header, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            raise CheckpointError(f"checkpoint file {source!r} has an unreadable weft header ({exc})") from None

        def as_asked(name: str, stored: tuple[str, np.ndarray], _kind: str) -> Any:
            return from_array(name, stored, framework=framework, source=source)

        if "state" in header:
            state = decode(header["state"], raw, convert=as_asked, source=source)
        else:  # written before job states: every entry is a top-level tensor
            state = {name: as_asked(name, stored, "numpy") for name, stored in raw.items()}
        data = decode(header["data"], raw, convert=as_asked, source=source) if "data" in header else None
        rng = decode(header["rng"], raw, convert=_as_saved, source=source) if "rng" in header else None
        with self._stats_lock:
            self._restores += 1
            self._bytes_read += info.size
        return Checkpoint(info=info, state=state, data=data, rng=rng)

    # -- writing -------------------------------------------------------------------
    def save(self, step: int, state: Mapping[Any, Any] | None = None, *, metrics: Mapping[str, float] | None = None,
             config: Mapping[str, Any] | None = None, data: Any = None, rng: Any = False,
             background: bool | None = None, tensors: Mapping[str, Any] | None = None) -> CheckpointSave:
        """Save the job's ``state`` for ``step``, in one file, atomically.

        ``state`` maps names to NumPy arrays, torch tensors and plain values, nested as
        deep as needed (``{"model": m.state_dict(), "opt": opt.state_dict()}``); it is
        restored exactly. ``data`` is kept beside it as is (a pipeline's ``state_dict()``).
        ``rng=True`` keeps the states of Python's ``random``, NumPy's global generator and
        torch's; ``rng=gen`` (or a list) keeps these and the given generators' too.
        Everything is captured when ``save()`` is called.

        Returns a :class:`CheckpointSave`: ``.info`` (or ``.result()``) is the
        :class:`CheckpointInfo` once written. Without background saving the write is done
        when this returns; with it, the call blocks only while the state is copied. A
        failed background save is raised by its handle, the next ``save()`` and ``wait()``.
        """
        started = time.perf_counter()
        if tensors is not None:
            warnings.warn("Checkpoints.save(tensors=...) is deprecated; pass the state as the second argument "
                          "(save(step, state))", DeprecationWarning, stacklevel=2)
            if state is not None:
                raise ConfigError("save() got both state and tensors=; pass the state only")
            state = tensors
        if isinstance(step, np.integer):
            step = int(step)
        check_int("step", step, minimum=0)
        if not isinstance(state, Mapping):
            raise ConfigError(f"state must be a mapping of name -> tensor or value, got {type(state).__name__}")
        generators = _rng.generators_of(rng)
        retention = self._retention()
        use_background = self.background if background is None else background
        self._raise_failed()
        meta = _json_safe("metrics", metrics)
        conf = _json_safe("config", config)
        encoder = Encoder(lambda name, value: to_array(name, value, copy=use_background))
        header: dict[str, Any] = {"version": _HEADER_VERSION, "step": step, "metrics": meta, "config": conf,
                                  "state": encoder.encode(state)}
        if data is not None:
            header["data"] = encoder.encode(data, prefix=_DATA_PREFIX)
        if generators is not None:
            header["rng"] = encoder.encode(_rng.capture(generators), prefix=_RNG_PREFIX)
        # serialised now: whatever the caller changes after save() returns is not in the file
        text = json.dumps(header, separators=(",", ":"), allow_nan=True)
        arrays = encoder.tensors
        try:
            if not use_background:
                done: Future[CheckpointInfo] = Future()
                done.set_result(self._write(step, arrays, text, meta, conf, retention))
                return CheckpointSave(step, done, self.directory)
            future: Future[CheckpointInfo] = self._worker().submit(self._write, step, arrays, text, meta, conf,
                                                                   retention)
            with self._stats_lock:
                self._pending.append((step, future))
            return CheckpointSave(step, future, self.directory)
        finally:
            with self._stats_lock:
                self._blocked_seconds += time.perf_counter() - started

    def _worker(self) -> Any:
        with self._stats_lock:
            if self._executor is None:
                import weft.exec

                self._executor = weft.exec.create("thread", workers=1, reason="background checkpoint saves, in order")
                _OPEN.add(self)
            return self._executor

    def _raise_failed(self) -> None:
        with self._stats_lock:
            done = [f for _, f in self._pending if f.done()]
            self._pending = [(s, f) for s, f in self._pending if not f.done()]
        for future in done:
            error = future.exception()
            if error is not None:
                raise failed(self.directory, error) from error

    def wait(self) -> None:
        """Block until every background save has finished; raise the first failure."""
        with self._stats_lock:
            pending = [f for _, f in self._pending]
        for future in pending:
            future.exception()
        self._raise_failed()

    def _write(self, step: int, arrays: dict[str, Any], header: str, metrics: dict[str, Any],
               config: dict[str, Any], retention: Retention) -> CheckpointInfo:
        started = time.perf_counter()
        self.directory.mkdir(parents=True, exist_ok=True)
        with staged_write(self._store.staging_path(step), durable=self.durable) as (f, staged):
            sha, size = write_safetensors(f, arrays, {"weft": header})
        staged.target = path = self._store.final_path(step, sha)
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
                pending=sum(1 for _, f in self._pending if not f.done()))

    def close(self) -> None:
        """Finish pending background saves and stop the worker thread."""
        try:
            self.wait()
        finally:
            with self._stats_lock:
                executor, self._executor = self._executor, None
            _OPEN.discard(self)
            if executor is not None:
                executor.close(cancel=False)

    def _finish_at_exit(self) -> None:
        """Give pending background saves ``exit_timeout`` seconds; warn about any that did
        not finish (the interpreter is exiting: nobody would see their errors otherwise)."""
        with self._stats_lock:
            pending = builtins.list(self._pending)
        if not pending:
            return
        concurrent.futures.wait([f for _, f in pending], timeout=self.exit_timeout)
        for step, future in pending:
            if not future.done():
                message = (f"the background checkpoint save of step {step} in {str(self.directory)!r} did not "
                           f"finish within exit_timeout={self.exit_timeout} s of the interpreter's exit and is "
                           "lost; call Checkpoints.wait() (or use `with Checkpoints(...)`) before exiting")
            elif future.exception() is not None:
                message = f"the background checkpoint save of step {step} failed: {future.exception()}"
            else:
                continue
            warnings.warn(message, RuntimeWarning, stacklevel=1)

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Checkpoints({str(self.directory)!r}, keep_last={self.keep_last}, keep_best={self.keep_best}, "
                f"metric={self.metric!r}, mode={self.mode!r}, background={self.background})")


def _as_saved(name: str, stored: tuple[str, np.ndarray], kind: str) -> Any:
    """Generator states come back as the framework that made them (torch's as torch tensors)."""
    return from_array(name, stored, framework="torch" if kind == "torch" else "numpy", source=name)


#: Checkpoints whose background worker has started and that are not closed: the exit
#: hook finishes their pending saves. Weak: an unreachable one has nothing pending (a
#: pending save's task holds its Checkpoints).
_OPEN: weakref.WeakSet[Checkpoints] = weakref.WeakSet()


def _finish_pending_saves() -> None:
    for checkpoints in builtins.list(_OPEN):
        checkpoints._finish_at_exit()


# atexit runs before the interpreter stops its daemon threads, the worker among them
atexit.register(_finish_pending_saves)
