"""What an experiment's ``measure`` receives inside the lab subprocess: the size mode,
a pyperf-like timer (warm-ups, interleaved repeats), and places for notes and parameters.

Stdlib and weft's own stdlib-only modules (``weft.errors``, ``weft.runtime``): this
module runs on whichever interpreter is under test, which finds weft on the PYTHONPATH
the lab gives it (the same source that runs ``weft.lab._runner`` there).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Literal, NoReturn, TypeVar

from weft import runtime
from weft.errors import ConfigError, LabError

__all__ = ["Context", "Mode", "Skip"]

Mode = Literal["smoke", "quick", "full"]
T = TypeVar("T")

#: (warm-up runs, timed repeats) per mode.
_REPEATS: dict[str, tuple[int, int]] = {"smoke": (1, 3), "quick": (1, 11), "full": (2, 21)}


class Skip(LabError):
    """Raised by ``measure`` when the experiment cannot run here; the message says why."""


class Context:
    """Sizes, timing and bookkeeping for one experiment run."""

    def __init__(self, mode: Mode) -> None:
        if mode not in _REPEATS:
            raise ConfigError(f"mode must be one of {sorted(_REPEATS)}, got {mode!r}")
        self.mode: Mode = mode
        self.warmups, self.repeats = _REPEATS[mode]
        self.samples: dict[str, list[float]] = {}
        #: Process CPU seconds (all threads) per wall second, for each timed run.
        self.cpu_per_wall: dict[str, list[float]] = {}
        self.units: dict[str, str] = {}
        self.params: dict[str, object] = {}
        self.notes: list[str] = []
        self.threshold: float | None = None
        #: Cores this process may use (CPU affinity and cgroup quota).
        self.cores = runtime.usable_cores()

    def pick(self, *, full: T, quick: T, smoke: T) -> T:
        """The value for this mode."""
        return {"full": full, "quick": quick, "smoke": smoke}[self.mode]

    def param(self, name: str, value: object) -> None:
        """Record a parameter of the measurement (sizes, workers) for the report."""
        self.params[name] = value

    def note(self, text: str) -> None:
        """Add a sentence the report shows next to the result."""
        self.notes.append(text)

    def record(self, variant: str, values: list[float], unit: str = "s") -> None:
        """Store samples measured some other way (memory peaks, sizes, child timings)."""
        if not values:
            raise ConfigError(f"variant {variant!r} has no samples to record: measure it at least once "
                              "before calling record()")
        self.samples.setdefault(variant, []).extend(float(v) for v in values)
        self.units[variant] = unit

    def time(self, variants: dict[str, Callable[[], object]], *, repeats: int | None = None,
             warmups: int | None = None) -> None:
        """Time each callable: warm-ups first, then repeats interleaved across variants
        (A B C A B C ...) so that drift on a shared machine hits every variant alike.
        The garbage collector is collected before and disabled during each call."""
        reps = self.repeats if repeats is None else repeats
        warm = self.warmups if warmups is None else warmups
        for fn in variants.values():
            for _ in range(warm):
                fn()
        for _ in range(reps):
            for name, fn in variants.items():
                wall, cpu = _time_once(fn)
                self.record(name, [wall])
                self.cpu_per_wall.setdefault(name, []).append(cpu / wall if wall > 0 else 0.0)

    def cores_used(self, variant: str) -> float:
        """Median CPU seconds per wall second of a timed variant: how many cores its threads
        really got (below the thread count when other processes competed for the cores)."""
        ratios = sorted(self.cpu_per_wall.get(variant, ()))
        return ratios[len(ratios) // 2] if ratios else 0.0

    def set_threshold(self, value: float, why: str) -> None:
        """Replace the claim's threshold for this machine (e.g. scaled by the core count)."""
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigError(f"threshold must be a ratio > 0, got {value!r}")
        self.threshold = float(value)
        self.note(why)

    def skip(self, reason: str) -> NoReturn:
        raise Skip(reason)


def _time_once(fn: Callable[[], object]) -> tuple[float, float]:
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        cpu = time.process_time()
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start, time.process_time() - cpu
    finally:
        if enabled:
            gc.enable()
