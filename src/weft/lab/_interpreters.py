"""Which interpreters the lab runs on: those named, or this one plus a free-threaded one."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from weft.errors import ConfigError
from weft.runtime import is_free_threaded_build

__all__ = ["Interpreter", "discover", "find_free_threaded", "probe"]

_log = logging.getLogger(__name__)
#: Runs in the interpreter being probed, before it is known to run weft at all (it may be
#: older than 3.11), so it asks sysconfig itself instead of importing weft.runtime.
_PROBE = ("import json, platform, sys, sysconfig; print(json.dumps([platform.python_version(), "
          "bool(sysconfig.get_config_var('Py_GIL_DISABLED')), sys.version_info[:2] >= (3, 11)]))")
_LOCATOR = Path("..") / "shared" / "tools" / "ft-python"
#: Failure bounds only. Probing starts an interpreter and imports json and sysconfig
#: (well under a second; a minute covers a cold disk and a busy machine) ...
_PROBE_TIMEOUT_SECONDS = 60.0
#: ... and the locator script may first unpack a free-threaded interpreter.
_LOCATOR_TIMEOUT_SECONDS = 300.0


@dataclass(frozen=True, kw_only=True)
class Interpreter:
    """An interpreter to run experiments on, and why it was chosen."""

    path: str
    version: str
    free_threaded: bool
    found_by: str

    @property
    def label(self) -> str:
        return f"{self.version}{'t' if self.free_threaded else ''}"


def probe(path: str, found_by: str) -> Interpreter:
    """Ask ``path`` for its version and build; ``ConfigError`` if it cannot run the lab."""
    resolved = path if os.sep in path else (shutil.which(path) or path)
    try:
        out = subprocess.run([resolved, "-c", _PROBE], capture_output=True, text=True,
                             timeout=_PROBE_TIMEOUT_SECONDS, check=True)
        version, free_threaded, supported = json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise ConfigError(f"cannot run the interpreter {path!r} ({found_by}): {exc}; "
                          "pass the path of a Python >= 3.11 executable") from exc
    if not supported:
        raise ConfigError(f"{path!r} is Python {version}; weft lab needs Python >= 3.11")
    return Interpreter(path=resolved, version=version, free_threaded=bool(free_threaded),
                       found_by=found_by)


def find_free_threaded(cwd: Path | None = None) -> tuple[str, str] | None:
    """(path, how it was found) of a free-threaded interpreter: ``WEFT_FT_PYTHON``, then
    ``python3.14t``/``python3.13t`` on PATH, then ``../shared/tools/ft-python``."""
    env = os.environ.get("WEFT_FT_PYTHON")
    if env:
        return env, "WEFT_FT_PYTHON"
    for name in ("python3.14t", "python3.13t"):
        found = shutil.which(name)
        if found:
            return found, f"{name} on PATH"
    locator = (cwd or Path.cwd()) / _LOCATOR
    if locator.is_file() and os.access(locator, os.X_OK):
        try:
            out = subprocess.run([str(locator)], capture_output=True, text=True, timeout=_LOCATOR_TIMEOUT_SECONDS,
                                 check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        path = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
        if path and os.path.exists(path):
            return path, str(_LOCATOR)
    return None


def discover(pythons: Sequence[str] = (), *, cwd: Path | None = None) -> list[Interpreter]:
    """The interpreters named in ``pythons``; when none are, this interpreter plus a
    free-threaded one if this one is not free-threaded and one can be found."""
    if pythons:
        found = [probe(p, "--python") for p in pythons]
    else:
        found = [probe(sys.executable, "current interpreter")]
        if not is_free_threaded_build():
            ft = find_free_threaded(cwd)
            if ft is not None:
                try:
                    found.append(probe(*ft))
                except ConfigError as exc:  # optional: say so, do not fail the lab over it
                    _log.warning("skipping the free-threaded interpreter: %s", exc)
    unique: dict[str, Interpreter] = {}
    for interp in found:
        unique.setdefault(interp.path, interp)
    return list(unique.values())
