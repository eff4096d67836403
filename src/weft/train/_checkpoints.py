"""Crash-safe checkpoints: safetensors files plus an atomically replaced JSON manifest.

A save writes ``step-<step>-<id>.safetensors`` through a temporary file (fsync,
rename, fsync of the directory), then replaces ``manifest.json`` the same way, and
only then deletes the files that retention dropped. The manifest is the single
source of truth: a process killed at any instant leaves either the old manifest
(whose files all still exist) or the new one (whose files are all complete). Every
file's sha256 and size are in the manifest and are checked on restore.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np

from weft.errors import CheckpointError, ConfigError
from weft.train._atomic import TMP_PREFIX, atomic_write, fsync_directory
from weft.train._safetensors import BF16, load_safetensors, write_safetensors

__all__ = ["Checkpoint", "CheckpointInfo", "CheckpointStatistics", "Checkpoints"]

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_FORMAT = "weft-checkpoints/1"


@dataclass(frozen=True, kw_only=True)
class CheckpointInfo:
    """One saved checkpoint as the manifest describes it (nothing loaded)."""

    step: int
    path: Path
    sha256: str
    size: int
    created: float
    metrics: Mapping[str, float] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)


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
    saves: int
    restores: int
    removed: int
    bytes_written: int
    bytes_read: int
    save_seconds: float      # writing, summed (on the background thread when background)
    blocked_seconds: float   # time callers spent inside save(), summed
    last_save_seconds: float
    pending: int


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

    ``keep_last`` most recent steps are kept, plus the ``keep_best`` best by ``metric``
    (``mode="min"`` or ``"max"``). ``background=True`` makes every save return at once
    after copying the tensors; the write happens on one weft worker thread, in order.
    """

    def __init__(self, directory: str | os.PathLike[str], *, keep_last: int | None = 3, keep_best: int = 0,
                 metric: str | None = None, mode: Literal["min", "max"] = "min", background: bool = False,
                 durable: bool = True) -> None:
        if keep_last is not None and (isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1):
            raise ConfigError(f"keep_last must be a positive integer or None (keep all), got {keep_last!r}")
        if isinstance(keep_best, bool) or not isinstance(keep_best, int) or keep_best < 0:
            raise ConfigError(f"keep_best must be an integer >= 0, got {keep_best!r}")
        if keep_best and not metric:
            raise ConfigError("keep_best needs metric=, the name of the metric that ranks checkpoints")
        if mode not in ("min", "max"):
            raise ConfigError(f"mode must be 'min' or 'max', got {mode!r}")
        self.directory = Path(directory)
        self.keep_last, self.keep_best, self.metric, self.mode = keep_last, keep_best, metric, mode
        self.background, self.durable = background, durable
        self._lock = threading.Lock()          # manifest read-modify-write in this process
        self._stats_lock = threading.Lock()
        self._executor: Any = None
        self._pending: builtins.list[Future[CheckpointInfo]] = []
        self._cleaned = False
        self._saves = self._restores = self._removed = self._bytes_written = self._bytes_read = 0
        self._save_seconds = self._blocked_seconds = self._last_save_seconds = 0.0

    # -- reading -------------------------------------------------------------------
    def _read_manifest(self) -> builtins.list[CheckpointInfo]:
        path = self.directory / MANIFEST
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return []
        except (ValueError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"checkpoint manifest {str(path)!r} is corrupted ({exc}); "
                                  "the safetensors files beside it are intact and load with "
                                  "weft.train.load_safetensors") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise CheckpointError(f"{str(path)!r} is not a weft checkpoint manifest (format "
                                  f"{data.get('format') if isinstance(data, dict) else None!r})")
        try:
            return [CheckpointInfo(step=int(e["step"]), path=self.directory / e["file"], sha256=e["sha256"],
                                   size=int(e["size"]), created=float(e["created"]),
                                   metrics=e.get("metrics", {}), config=e.get("config", {}))
                    for e in data["checkpoints"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint manifest {str(path)!r} has a bad entry ({exc})") from None

    def list(self) -> builtins.list[CheckpointInfo]:
        """Every checkpoint in the manifest, oldest step first."""
        return sorted(self._read_manifest(), key=lambda i: i.step)

    def latest(self) -> CheckpointInfo | None:
        entries = self.list()
        return entries[-1] if entries else None

    def best(self) -> CheckpointInfo | None:
        """The checkpoint with the best ``metric`` (None if none has it)."""
        if not self.metric:
            raise ConfigError("best() needs Checkpoints(..., metric='name')")
        ranked = self._ranked(self.list())
        return ranked[0] if ranked else None

    def _ranked(self, entries: builtins.list[CheckpointInfo]) -> builtins.list[CheckpointInfo]:
        assert self.metric is not None
        scored = [e for e in entries if isinstance(e.metrics.get(self.metric), int | float)
                  and not math.isnan(e.metrics[self.metric])]
        sign = 1.0 if self.mode == "min" else -1.0
        return sorted(scored, key=lambda e: (sign * float(e.metrics[self.metric or ""]), -e.step))

    def restore(self, step: int | None = None, *, framework: Literal["numpy", "torch"] = "numpy",
                verify: bool = True) -> Checkpoint:
        """Load the checkpoint of ``step`` (default: the latest), checking its sha256.

        Raises :class:`CheckpointError` naming the file if it is missing, truncated or
        corrupted. ``framework="torch"`` returns torch tensors (bfloat16 included).
        """
        if framework not in ("numpy", "torch"):
            raise ConfigError(f"framework must be 'numpy' or 'torch', got {framework!r}")
        entries = self.list()
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
             config: Mapping[str, Any] | None = None, background: bool | None = None,
             ) -> CheckpointInfo | Future[CheckpointInfo]:
        """Save ``tensors`` (name -> NumPy array or torch tensor) for ``step``.

        Returns the :class:`CheckpointInfo`, or with background saving a Future of it:
        the call then blocks only while the tensors are copied. A failed background
        save is raised by the next ``save()`` or by ``wait()``.
        """
        started = time.perf_counter()
        if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
            raise ConfigError(f"step must be an integer >= 0, got {step!r}")
        if not isinstance(tensors, Mapping):
            raise ConfigError(f"tensors must be a mapping of name -> array, got {type(tensors).__name__}")
        use_background = self.background if background is None else background
        self._raise_failed()
        arrays = {name: _to_numpy(name, value, copy=use_background) for name, value in tensors.items()}
        meta = _json_safe("metrics", metrics)
        conf = _json_safe("config", config)
        try:
            if not use_background:
                return self._write(int(step), arrays, meta, conf)
            future: Future[CheckpointInfo] = self._worker().submit(self._write, int(step), arrays, meta, conf)
            with self._stats_lock:
                self._pending.append(future)
            return future
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
                raise CheckpointError(f"a background checkpoint save in {str(self.directory)!r} failed: "
                                      f"{error}") from error

    def wait(self) -> None:
        """Block until every background save has finished; raise the first failure."""
        with self._stats_lock:
            pending = list(self._pending)
        for future in pending:
            future.exception()
        self._raise_failed()

    def _write(self, step: int, arrays: dict[str, Any], metrics: dict[str, Any], config: dict[str, Any],
               ) -> CheckpointInfo:
        started = time.perf_counter()
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"step-{step:010d}-{uuid.uuid4().hex[:8]}.safetensors"
        path = self.directory / name
        header = {"weft": json.dumps({"step": step, "metrics": metrics, "config": config})}
        with atomic_write(path, durable=self.durable) as f:
            sha, size = write_safetensors(f, arrays, header)
        info = CheckpointInfo(step=step, path=path, sha256=sha, size=size, created=time.time(),
                              metrics=metrics, config=config)
        with self._lock, _DirectoryLock(self.directory):
            current = self._read_manifest()
            entries = [e for e in current if e.step != step]
            replaced = [e for e in current if e.step == step]
            entries.append(info)
            kept, dropped = self._retain(entries)
            self._write_manifest(kept)
            for old in dropped + replaced:
                with contextlib.suppress(FileNotFoundError):
                    old.path.unlink()
            if not self._cleaned:
                self._remove_garbage()
                self._cleaned = True
            if self.durable and (dropped or replaced):
                fsync_directory(self.directory)
        elapsed = time.perf_counter() - started
        with self._stats_lock:
            self._saves += 1
            self._removed += len(dropped) + len(replaced)
            self._bytes_written += size
            self._save_seconds += elapsed
            self._last_save_seconds = elapsed
        logger.debug("saved checkpoint step %d to %s (%d bytes, %.3f s)", step, path, size, elapsed)
        return info

    def _retain(self, entries: builtins.list[CheckpointInfo]) -> tuple[builtins.list[CheckpointInfo], builtins.list[CheckpointInfo]]:
        by_step = sorted(entries, key=lambda e: e.step)
        keep = {e.step for e in (by_step if self.keep_last is None else by_step[-self.keep_last:])}
        if self.keep_best and self.metric:
            keep |= {e.step for e in self._ranked(by_step)[:self.keep_best]}
        return [e for e in by_step if e.step in keep], [e for e in by_step if e.step not in keep]

    def _write_manifest(self, entries: builtins.list[CheckpointInfo]) -> None:
        data = {"format": _FORMAT, "checkpoints": [
            {"step": e.step, "file": e.path.name, "sha256": e.sha256, "size": e.size, "created": e.created,
             "metrics": dict(e.metrics), "config": dict(e.config)} for e in entries]}
        with atomic_write(self.directory / MANIFEST, durable=self.durable) as f:
            f.write(json.dumps(data, indent=1).encode())

    def _remove_garbage(self) -> None:
        """Delete what a killed save left: temporary files of dead processes, and
        checkpoint files no manifest entry points to."""
        listed = {e.path.name for e in self._read_manifest()}
        try:
            manifest_time = (self.directory / MANIFEST).stat().st_mtime
        except FileNotFoundError:
            manifest_time = 0.0
        for path in self.directory.iterdir():
            if path.name.startswith(TMP_PREFIX):
                pid = path.name.rsplit(".", 2)[-2] if path.name.count(".") >= 2 else ""
                if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
            elif (path.name.startswith("step-") and path.suffix == ".safetensors" and path.name not in listed
                  and path.stat().st_mtime < manifest_time):
                # older than the last manifest update and not in it: dropped or orphaned by a
                # kill (a concurrent writer's newer file is left alone)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _DirectoryLock:
    """An advisory lock on ``<directory>/.lock`` so two processes never interleave
    manifest updates (no-op where ``fcntl`` is missing)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / ".lock"
        self.fd = -1

    def __enter__(self) -> None:
        try:
            import fcntl
        except ImportError:
            return
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing releases the flock
            self.fd = -1
