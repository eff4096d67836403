"""The checkpoint directory on disk: its manifest, its lock, retention and garbage removal.

``manifest.json`` is the single source of truth: it lists every checkpoint file with
its step, sha256, size, metrics and config, and is only ever replaced atomically. A
checkpoint file is written under a temporary name and renamed to
``step-<step>-<id>.safetensors`` only while the directory lock is held, immediately
before the manifest that names it. So, under the lock, a checkpoint file the manifest
does not name can only be left over by a killed save or a failed delete: garbage.

A process killed at any instant leaves either the old manifest (whose files all still
exist: files are deleted only after the new manifest is in place) or the new one
(whose files are all complete).

A file's name ends with the first hex digits of its sha256, so each file can be checked
on its own: a deleted ``manifest.json`` is rebuilt from the files that verify, instead
of the next save orphaning (and garbage-collecting) them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from weft._checks import check_int, check_one_of
from weft.errors import CheckpointError, ConfigError
from weft.runtime import pid_alive
from weft.train._atomic import StagedFile, atomic_write, fsync_directory, temporary_owner

__all__ = ["MANIFEST", "CheckpointInfo", "CheckpointStore", "DirectoryLock", "Retention"]

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
#: Written into every manifest; a reader refuses any other format.
MANIFEST_FORMAT = "weft-checkpoints/1"
#: The advisory lock file two writers of one directory take in turn.
LOCK_FILE = ".lock"
_FILE_PREFIX, _FILE_SUFFIX = "step-", ".safetensors"
#: Steps are zero-padded to this many digits so file names sort by step (up to 10**10 steps).
_STEP_DIGITS = 10
#: Hex digits of the file's sha256 in its name: 64 bits tell a file that verifies from one
#: that does not, and keep two different saves of one step apart (an identical save may
#: take the same name: it replaces the file with the same bytes).
_FILE_SHA_DIGITS = 16
#: ``step-<step>-<id>.safetensors``; files written before the sha256 was in the name
#: have 8 random hex digits there (they are checked for structure only).
_FILE_NAME = re.compile(r"step-(\d+)-([0-9a-f]{8}|[0-9a-f]{16})\.safetensors")


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
class Retention:
    """Which checkpoints survive a save: the ``keep_last`` most recent steps (None: all),
    plus the ``keep_best`` best by ``metric`` (lowest with ``mode="min"``)."""

    keep_last: int | None = 3
    keep_best: int = 0
    metric: str | None = None
    mode: Literal["min", "max"] = "min"

    def __post_init__(self) -> None:
        check_int("keep_last", self.keep_last, none=True)
        check_int("keep_best", self.keep_best, minimum=0)
        if self.keep_best and not self.metric:
            raise ConfigError("keep_best needs metric=, the name of the metric that ranks checkpoints")
        check_one_of("mode", self.mode, ("min", "max"))

    def ranked(self, entries: list[CheckpointInfo]) -> list[CheckpointInfo]:
        """Entries that have ``metric`` (and it is not NaN), best first; ties: the later step."""
        metric = self.metric
        if metric is None:
            return []
        scored = [e for e in entries if isinstance(e.metrics.get(metric), int | float)
                  and not math.isnan(e.metrics[metric])]
        sign = 1.0 if self.mode == "min" else -1.0
        return sorted(scored, key=lambda e: (sign * float(e.metrics[metric]), -e.step))

    def split(self, entries: list[CheckpointInfo]) -> tuple[list[CheckpointInfo], list[CheckpointInfo]]:
        """(kept, dropped), each ordered by step."""
        by_step = sorted(entries, key=lambda e: e.step)
        keep = {e.step for e in (by_step if self.keep_last is None else by_step[-self.keep_last:])}
        if self.keep_best:
            keep |= {e.step for e in self.ranked(by_step)[:self.keep_best]}
        return [e for e in by_step if e.step in keep], [e for e in by_step if e.step not in keep]


class DirectoryLock:
    """An advisory lock on ``<directory>/.lock`` so two processes never interleave
    manifest updates (no-op where ``fcntl`` is missing)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_FILE
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


class CheckpointStore:
    """Reads and updates one directory's manifest; knows nothing of tensors."""

    def __init__(self, directory: Path, *, durable: bool = True) -> None:
        self.directory = directory
        self.durable = durable
        self._lock = threading.Lock()  # manifest read-modify-write within this process
        self._cleaned = False
        self._warned_rebuild = False

    @property
    def manifest(self) -> Path:
        return self.directory / MANIFEST

    def read(self) -> list[CheckpointInfo]:
        """The manifest's entries as saved (not sorted). Without a manifest: the checkpoint
        files that verify (see :meth:`rebuild`), empty if there are none."""
        entries = self._read_manifest()
        return self.rebuild(persist=False) if entries is None else entries

    def _read_manifest(self) -> list[CheckpointInfo] | None:
        path = self.manifest
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        except (ValueError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"checkpoint manifest {str(path)!r} is corrupted ({exc}); "
                                  "the safetensors files beside it are intact and load with "
                                  "weft.train.load_safetensors") from None
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise CheckpointError(f"{str(path)!r} is not a weft checkpoint manifest (format "
                                  f"{data.get('format') if isinstance(data, dict) else None!r})")
        try:
            return [CheckpointInfo(step=int(e["step"]), path=self.directory / e["file"], sha256=e["sha256"],
                                   size=int(e["size"]), created=float(e["created"]),
                                   metrics=e.get("metrics", {}), config=e.get("config", {}))
                    for e in data["checkpoints"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint manifest {str(path)!r} has a bad entry ({exc})") from None

    def staging_path(self, step: int) -> Path:
        """The name a checkpoint of ``step`` is written under (temporarily) before its
        sha256, and so its final name (:meth:`final_path`), is known."""
        return self.directory / f"{_FILE_PREFIX}{step:0{_STEP_DIGITS}d}{_FILE_SUFFIX}"

    def final_path(self, step: int, sha256: str) -> Path:
        """Where the checkpoint of ``step`` whose content has ``sha256`` goes."""
        return self.directory / f"{_FILE_PREFIX}{step:0{_STEP_DIGITS}d}-{sha256[:_FILE_SHA_DIGITS]}{_FILE_SUFFIX}"

    # -- a missing manifest ------------------------------------------------------------
    def rebuild(self, *, persist: bool) -> list[CheckpointInfo]:
        """The entries of a manifest that is missing, rebuilt from the checkpoint files
        beside it: each is read whole and checked (its sha256 against the one in its
        name, its header, its length); files that fail are left out, with a warning.
        ``persist`` writes the rebuilt manifest (the caller holds the directory lock)."""
        entries: dict[int, CheckpointInfo] = {}
        rejected: list[str] = []
        try:
            names = sorted(p.name for p in self.directory.iterdir())
        except FileNotFoundError:
            return []
        for name in names:
            match = _FILE_NAME.fullmatch(name)
            if match is None:
                continue
            try:
                info = self._verify(self.directory / name, int(match.group(1)), match.group(2))
            except CheckpointError as exc:
                rejected.append(str(exc))
                continue
            previous = entries.get(info.step)
            if previous is None or previous.created <= info.created:  # a step saved twice: the later file
                entries[info.step] = info
        found = sorted(entries.values(), key=lambda e: e.step)
        if not found and not rejected:
            return []
        if persist:
            self._write(found)
        if persist or not self._warned_rebuild:
            self._warned_rebuild = True
            warnings.warn(f"{MANIFEST} is missing in {str(self.directory)!r}: rebuilt it from the "
                          f"{len(found)} checkpoint file(s) that verify (steps {[e.step for e in found]})"
                          + (f"; left out {len(rejected)} that do not: {'; '.join(rejected)}" if rejected else ""),
                          RuntimeWarning, stacklevel=4)
        return found

    def _verify(self, path: Path, step: int, name_id: str) -> CheckpointInfo:
        from weft.train._safetensors import load_safetensors

        sha = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                created = os.fstat(f.fileno()).st_mtime
                while chunk := f.read(1 << 24):
                    sha.update(chunk)
        except OSError as exc:
            raise CheckpointError(f"checkpoint file {str(path)!r} cannot be read ({exc})") from None
        digest = sha.hexdigest()
        if len(name_id) == _FILE_SHA_DIGITS and not digest.startswith(name_id):
            raise CheckpointError(f"checkpoint file {str(path)!r} is corrupted (its sha256 does not match "
                                  "the one in its name)")
        _tensors, metadata = load_safetensors(path, sha256=digest, size=size)
        try:
            header = json.loads(metadata["weft"])
            saved_step = int(header["step"])
            metrics, config = dict(header.get("metrics", {})), dict(header.get("config", {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint file {str(path)!r} has no readable weft header ({exc!r})") from None
        if saved_step != step:
            raise CheckpointError(f"checkpoint file {str(path)!r} holds step {saved_step}, not the step "
                                  "its name says")
        return CheckpointInfo(step=step, path=path, sha256=digest, size=size, created=created, metrics=metrics,
                              config=config)

    def clean(self) -> None:
        """Once per store, before its first save: rebuild a missing manifest and delete
        what killed saves left (see :meth:`_remove_garbage`). Done when a ``Checkpoints``
        opens an existing directory, so nothing a crashed save left outlives the next
        open; a directory that cannot be written (or whose manifest is corrupted) is
        left as it is."""
        if self._cleaned or not self.directory.is_dir():
            return
        try:
            with self._lock, DirectoryLock(self.directory):
                entries = self._read_manifest()
                if entries is None:
                    entries = self.rebuild(persist=True)
                self._remove_garbage({e.path.name for e in entries})
                self._cleaned = True
        except CheckpointError as exc:
            logger.debug("not cleaning %s: %s", self.directory, exc)
        except OSError as exc:
            logger.debug("cannot clean %s: %s", self.directory, exc)

    def add(self, info: CheckpointInfo, staged: StagedFile, retention: Retention) -> int:
        """Put the staged file of ``info`` in place and into the manifest, apply
        ``retention``, delete the files it dropped; return how many were deleted."""
        with self._lock, DirectoryLock(self.directory):
            current = self._read_manifest()
            if current is None:  # read before the new file is in place, which is no part of it
                current = self.rebuild(persist=False)
            try:
                staged.commit()
            except BaseException:
                staged.discard()
                raise
            replaced = [e for e in current if e.step == info.step]
            kept, dropped = retention.split([e for e in current if e.step != info.step] + [info])
            self._write(kept)
            for old in dropped + replaced:
                if old.path != info.path:  # the same bytes saved again take the same name
                    with contextlib.suppress(FileNotFoundError):
                        old.path.unlink()
            if not self._cleaned:
                self._remove_garbage({e.path.name for e in kept})
                self._cleaned = True
            if self.durable and (dropped or replaced):
                fsync_directory(self.directory)
        return len(dropped) + len(replaced)

    def _write(self, entries: list[CheckpointInfo]) -> None:
        data = {"format": MANIFEST_FORMAT, "checkpoints": [
            {"step": e.step, "file": e.path.name, "sha256": e.sha256, "size": e.size, "created": e.created,
             "metrics": dict(e.metrics), "config": dict(e.config)} for e in entries]}
        with atomic_write(self.manifest, durable=self.durable) as f:
            f.write(json.dumps(data, indent=1).encode())

    def _remove_garbage(self, listed: set[str]) -> None:
        """Delete what killed saves left: temporary files of processes that are gone, and
        checkpoint files the manifest does not name. Called with the lock held: every
        writer renames its file into place only under the lock, so an unnamed one is no
        other writer's work in progress."""
        me = os.getpid()
        for path in self.directory.iterdir():
            owner = temporary_owner(path.name)
            if owner is not None:
                garbage = owner != me and not pid_alive(owner)
            else:
                garbage = (path.name.startswith(_FILE_PREFIX) and path.name.endswith(_FILE_SUFFIX)
                           and path.name not in listed)
            if garbage:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
