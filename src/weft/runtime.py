"""Facts about this interpreter and machine, stated rather than guessed.

- whether this is a free-threaded build and whether the GIL is enabled now;
- how many cores this process may really use (CPU affinity and cgroup quota);
- which modules, if any, re-enable the GIL when imported on a free-threaded build;
- which execution backend weft picks for each kind of work, and why.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import sysconfig
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from weft.exec._policy import BackendChoice, Workload

if TYPE_CHECKING:  # probing clusters (sockets, subprocesses) is imported when asked for
    from weft.exec._cluster_info import ClusterInfo

__all__ = [
    "BackendChoice",
    "GilCheck",
    "RuntimeFacts",
    "Workload",
    "check_gil_imports",
    "choose_backend",
    "facts",
    "gil_enabled",
    "is_free_threaded_build",
    "package_versions",
    "pid_alive",
    "usable_cores",
]


def is_free_threaded_build() -> bool:
    """True when this CPython was built with ``--disable-gil`` (a 't' build)."""
    return bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


def gil_enabled() -> bool:
    """True when the GIL is enabled right now (always True before 3.13)."""
    probe = getattr(sys, "_is_gil_enabled", None)
    return True if probe is None else bool(probe())


def _cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup quota, or None when there is no quota."""
    v2 = root / "cpu.max"
    try:
        quota, period = v2.read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def usable_cores() -> int:
    """Cores this process may run on: CPU affinity, capped by any cgroup CPU quota."""
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    limit = _cgroup_cpu_limit()
    if limit is not None:
        cores = min(cores, max(1, math.ceil(limit)))
    return max(1, cores)


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` exists (a process of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def choose_backend(workload: Workload, *, cores: int | None = None, gil: bool | None = None) -> BackendChoice:
    """The backend for a kind of work on this interpreter, with the reason.

    The rule lives in :mod:`weft.exec._policy`; for a specific function,
    ``backend="auto"`` replaces it by a measurement.
    """
    from weft.exec._policy import for_workload

    return for_workload(workload, cores=cores, gil=gil)


@dataclass(frozen=True, kw_only=True)
class GilCheck:
    """Which modules, imported in order in a fresh interpreter, left the GIL enabled."""

    python: str
    free_threaded_build: bool
    gil_enabled_after: bool
    reenabled_by: str | None
    failed_imports: dict[str, str]


_GIL_CHECK_SCRIPT = r"""
import importlib, json, sys, warnings
mods = json.loads(sys.argv[1])
probe = getattr(sys, "_is_gil_enabled", lambda: True)
culprit, failed = None, {}
warnings.simplefilter("ignore")
for name in mods:
    before = probe()
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"
        continue
    if culprit is None and not before and probe():
        culprit = name
import sysconfig
print(json.dumps({"python": sys.executable,
                  "free_threaded_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
                  "gil_enabled_after": probe(), "reenabled_by": culprit, "failed_imports": failed}))
"""

DEFAULT_GIL_MODULES = (
    "weft", "weft.runtime", "weft.errors", "weft.exec", "numpy", "PIL.Image", "rich", "typer",
)


def check_gil_imports(modules: tuple[str, ...] = DEFAULT_GIL_MODULES, *, python: str | None = None,
                      timeout: float = 60.0) -> GilCheck:
    """Import ``modules`` one by one in a fresh ``python`` and report who enabled the GIL.

    A fresh process is needed because the GIL, once re-enabled by an extension module
    that does not declare free-threading support, stays on for the process's life.
    """
    env = dict(os.environ)
    env.pop("PYTHON_GIL", None)  # a forced setting would hide the module that flips it
    executable = python or sys.executable
    try:
        out = subprocess.run(
            [executable, "-c", _GIL_CHECK_SCRIPT, json.dumps(list(modules))],
            capture_output=True, text=True, timeout=timeout, env=env, check=True,
        )
    except OSError as exc:
        from weft.errors import ConfigError

        raise ConfigError(f"cannot run {executable!r} to check its imports ({exc}): pass the path of a "
                          "Python executable") from exc
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return GilCheck(**data)


#: Packages whose versions ``weft doctor`` lists: what weft works with, where installed.
REPORTED_PACKAGES = ("numpy", "torch", "onnxruntime", "pyarrow", "ray", "dask", "distributed")
#: Packages that publish no wheels for free-threaded builds: doctor says why they are absent.
_NO_FREE_THREADED_WHEELS = {"ray": "Ray publishes no cp313t wheels",
                            "distributed": "Dask's distributed publishes no cp313t support"}


def package_versions() -> dict[str, str]:
    """The installed version of each of :data:`REPORTED_PACKAGES`, or why there is none.

    Read from the installed metadata: nothing is imported.
    """
    from importlib import metadata

    versions = {}
    for name in REPORTED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            why = _NO_FREE_THREADED_WHEELS.get(name) if is_free_threaded_build() else None
            versions[name] = f"not installed ({why})" if why else "not installed"
    return versions


@dataclass(frozen=True, kw_only=True)
class RuntimeFacts:
    """Everything ``weft doctor`` reports."""

    python: str
    version: str
    implementation: str
    free_threaded_build: bool
    gil_enabled: bool
    os_cpu_count: int | None
    usable_cores: int
    cgroup_cpu_limit: float | None
    backends: tuple[BackendChoice, ...]
    gil_check: GilCheck | None
    clusters: tuple[ClusterInfo, ...] = ()
    #: version of each package weft works with, or "not installed" (see package_versions)
    packages: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def facts(*, check_imports: bool = True, check_clusters: bool = True) -> RuntimeFacts:
    """Collect the runtime facts; ``check_imports`` adds the (subprocess) GIL import check,
    ``check_clusters`` the Ray and Dask clusters this machine points at (if any)."""
    gil_check = None
    if check_imports and is_free_threaded_build():
        gil_check = check_gil_imports()
    from weft.exec._cluster_info import probe_clusters

    return RuntimeFacts(
        python=sys.executable,
        version=sys.version.split()[0],
        implementation=sys.implementation.name,
        free_threaded_build=is_free_threaded_build(),
        gil_enabled=gil_enabled(),
        os_cpu_count=os.cpu_count(),
        usable_cores=usable_cores(),
        cgroup_cpu_limit=_cgroup_cpu_limit(),
        backends=tuple(choose_backend(w) for w in ("cpu", "native", "io")),
        gil_check=gil_check,
        clusters=probe_clusters() if check_clusters else (),
        packages=package_versions(),
    )
