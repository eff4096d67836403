"""Which backend runs a piece of work, and why: the one place weft decides.

Every part of weft that picks a backend asks this module: the table ``weft doctor``
prints (per kind of work), the ``auto`` executor and a pipeline's map stage (from a
measurement of the function itself), and the model server (from what each model
declares, model by model). The thresholds below are the rule; the reasons returned with each choice
are the sentences users read in ``statistics()``, ``weft doctor`` and the CLI.

The rule, in order:

1. The GIL is off (free-threaded build): threads. They run Python in parallel and
   share data by reference, so processes could only add copying.
2. One usable core (or one worker): threads. Processes add start-up and copying and
   no parallelism, while threads still overlap waits.
3. Work that mostly waits (I/O), or native code that releases the GIL: threads.
4. A function that cannot be pickled cannot go to processes: threads. Nor can one of a
   script without an ``if __name__ == "__main__":`` guard: every worker would re-run it.
5. Calls shorter than :data:`MIN_PROCESS_SECONDS_PER_CALL`: threads (sending them to
   processes would cost more than the call). Items a map stage sends in chunks pay the
   round trip once per chunk: for them the bound is
   :data:`MIN_PROCESS_SECONDS_PER_CHUNKED_ITEM`.
   Too few items to measure: threads (nothing says processes would repay their start-up).
6. CPU-bound calls measured on threads: if the process then computed on at least
   :data:`MIN_PARALLEL_CORES` cores (or every usable core, if fewer) and the threads
   reached :data:`MIN_THREAD_EFFICIENCY` of the ideal speed-up, the function releases
   the GIL: threads. Otherwise it holds the GIL: processes.
7. A map stage then holds its choice to what it delivers (:func:`by_throughput`):
   processes chosen in rule 6 run a trial of :data:`THROUGHPUT_TRIAL_SECONDS`, and
   the stage goes back to threads unless processes beat the threads' measured rate.
   When the cost per item its workers report (CPU seconds, which waiting for the GIL does
   not inflate) moves by :data:`REDECIDE_COST_FACTOR` from the cost after the last
   decision, for several chunks in a row, in the direction that could favour the other
   backend (up on threads: processes' fixed cost per chunk then weighs less; down on
   processes), both backends are measured again on the items in hand, and the faster
   by :data:`SWITCH_MARGIN` runs the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from weft.errors import ConfigError

__all__ = [
    "CALIBRATION_BUDGET_SECONDS",
    "REDECIDE_COST_FACTOR",
    "SWITCH_MARGIN",
    "THROUGHPUT_TRIAL_SECONDS",
    "MIN_PARALLEL_CORES",
    "MIN_PROCESS_SECONDS_PER_CALL",
    "MIN_PROCESS_SECONDS_PER_CHUNKED_ITEM",
    "MIN_THREAD_EFFICIENCY",
    "WAITING_CPU_SHARE",
    "BackendChoice",
    "Workload",
    "after_serial_calls",
    "after_thread_trial",
    "by_throughput",
    "describe_rule",
    "for_model",
    "for_workload",
    "interpreter_rule",
    "too_few_items",
    "unmeasured",
    "unpicklable",
    "validate_backend",
]

Workload = Literal["cpu", "native", "io"]

#: A GIL-bound function cannot compute on much more than one core however many threads
#: run it; 1.5 leaves room for measurement noise on both sides of that line.
MIN_PARALLEL_CORES = 1.5
#: Threads must also reach this share of the ideal speed-up: CPU time alone can be
#: inflated by other threads of the process working in the same window.
MIN_THREAD_EFFICIENCY = 0.6
#: Below this a call is cheaper than sending it to a process and back (~50-100 us of
#: pickling, a pipe round trip and a dispatcher wake-up, measured on 2 cores).
MIN_PROCESS_SECONDS_PER_CALL = 50e-6
#: The same bound for the items of a map stage, which go to processes in chunks of about
#: 10 ms of work: the round trip is paid once per chunk, and what is left per item is
#: pickling it and its result (a few us for small ones). Under the per-call bound, a
#: pure-Python record parser measured at 22-46 us per item stayed on GIL-bound threads at
#: 36,000 items/s where processes delivered 56,000. Items that do not repay the trip
#: (large inputs or results) show in the throughput trial of rule 7, which sends the
#: stage back to threads.
MIN_PROCESS_SECONDS_PER_CHUNKED_ITEM = 5e-6
#: Calls whose CPU time is under this share of the time they could have run mostly wait
#: (I/O). "Could have run" is wall time minus time spent waiting for a CPU where the OS
#: reports it (Linux), so a busy machine does not make CPU-bound calls look like I/O.
WAITING_CPU_SHARE = 0.5
#: Wall time a calibration may spend measuring (its results are kept, not thrown away).
CALIBRATION_BUDGET_SECONDS = 0.25
#: Wall time a map stage measures one backend's delivered throughput in a trial (rule 7),
#: counted from its first finished chunk (so a process's start-up is not held against it).
THROUGHPUT_TRIAL_SECONDS = 0.5
#: A backend replaces the one in use only when measured this much faster: a noisy
#: measurement must not make a stage flip between backends.
SWITCH_MARGIN = 1.1
#: A stage measures its backends again when the seconds per item its workers report move
#: by this factor from those at its last decision (a function whose cost changes mid-run).
#: Threads of a GIL build report costs that vary about 2x with contention alone
#: (measured on image decoding, 2 threads on 2 cores): 3x is a change of the function.
REDECIDE_COST_FACTOR = 3.0


@dataclass(frozen=True, kw_only=True)
class BackendChoice:
    """A backend and the reason it was chosen, with the figures measured, if any.

    ``workload`` names the kind of work for a per-workload choice (``weft doctor``);
    ``serial_seconds_per_item``, ``thread_efficiency`` and ``cores_used`` are set when
    the choice came from measuring the function.
    """

    backend: str
    reason: str
    workload: str | None = None
    serial_seconds_per_item: float | None = None
    thread_efficiency: float | None = None
    cores_used: float | None = None
    #: items/s each backend delivered in a throughput trial (rule 7), by backend name
    throughputs: tuple[tuple[str, float], ...] | None = None


_WORKLOAD_REASONS: dict[str, str] = {
    "io": "blocking I/O releases the GIL, so threads overlap waits without copying data",
    "native": "native code releases the GIL, so threads run it in parallel without copying data",
    "cpu": "the GIL serialises Python bytecode on threads; processes run it in parallel",
}


def _gil(gil: bool | None) -> bool:
    if gil is not None:
        return gil
    from weft import runtime

    return runtime.gil_enabled()


def _cores(cores: int | None) -> int:
    if cores is not None:
        return cores
    from weft import runtime

    return runtime.usable_cores()


def interpreter_rule(workers: int, *, gil: bool | None = None, cores: int | None = None) -> BackendChoice | None:
    """Rules 1 and 2: a choice that needs no measurement, or None when it does."""
    if not _gil(gil):
        return BackendChoice(backend="thread",
                             reason="the GIL is off: threads run Python in parallel, sharing data by reference")
    if min(workers, _cores(cores)) <= 1:
        return BackendChoice(backend="thread",
                             reason="one usable core or worker: processes would add copying, not parallelism")
    return None


def for_workload(workload: Workload, *, cores: int | None = None, gil: bool | None = None) -> BackendChoice:
    """The backend for a kind of work on this interpreter (what ``weft doctor`` prints)."""
    if workload not in _WORKLOAD_REASONS:
        raise ConfigError(f"unknown workload {workload!r}: use one of {sorted(_WORKLOAD_REASONS)}")
    if workload == "cpu":
        ruled = interpreter_rule(_cores(cores), gil=gil, cores=cores)
        if ruled is not None:
            return BackendChoice(backend=ruled.backend, reason=ruled.reason, workload=workload)
    elif not _gil(gil):
        ruled = interpreter_rule(2, gil=False)
        assert ruled is not None
        return BackendChoice(backend="thread", reason=ruled.reason, workload=workload)
    backend = "process" if workload == "cpu" else "thread"
    return BackendChoice(backend=backend, reason=_WORKLOAD_REASONS[workload], workload=workload)


def for_model(model: str, releases_gil: bool, *, gil: bool | None = None) -> BackendChoice:
    """The backend for one served model, from what it declares (``releases_gil``).

    A model that does not declare that it releases the GIL is assumed to hold it. Each
    model of a server is chosen for on its own: one that holds the GIL does not push the
    others onto processes.
    """
    if not _gil(gil):
        return BackendChoice(backend="thread", reason="the GIL is off: threads run models in parallel")
    if not releases_gil:
        return BackendChoice(backend="process",
                             reason=f"the GIL is on and model {model!r} does not declare releases_gil = True: "
                                    "processes with shared-memory tensors")
    return BackendChoice(backend="thread", reason=f"model {model!r} releases the GIL (NumPy, onnxruntime, torch): "
                                                  "threads share tensors by reference")


def unpicklable(error: BaseException) -> BackendChoice:
    """Rule 4: the function could not be pickled (``error`` says why)."""
    return BackendChoice(backend="thread",
                         reason=f"the function cannot be pickled ({type(error).__name__}), so it cannot go to "
                                "processes (define it at module level to allow them): threads")


def unguarded_script(path: str) -> BackendChoice:
    """Rule 4: process workers would re-run the main script at ``path`` (it has no guard)."""
    return BackendChoice(backend="thread",
                         reason=f"the script {path} has no `if __name__ == \"__main__\":` guard, so every process "
                                "worker would run it again (put its entry point under the guard to allow "
                                "processes): threads")


def too_few_items(*, items: int, seconds_per_call: float | None = None) -> BackendChoice:
    """The input ended before the measurement did: threads.

    ``items`` is how many items there were; ``seconds_per_call`` the serial time per call
    when the serial calls were measured (the input then ended before the thread trial).
    """
    if items == 0:
        reason = "no items to measure: threads"
    elif seconds_per_call is None:
        reason = "too few items to measure: threads"
    else:
        reason = "too few items to measure threads: threads"
    return BackendChoice(backend="thread", reason=reason, serial_seconds_per_item=seconds_per_call)


def unmeasured() -> BackendChoice:
    """A call with nothing to measure first (``submit`` before any ``map``) on a GIL build."""
    return BackendChoice(backend="process",
                         reason="no sample to measure and the GIL is on: processes, assuming CPU-bound Python")


def after_serial_calls(seconds_per_call: float, cpu_share: float, *, chunked: bool = False,
                       min_seconds_per_call: float | None = None) -> BackendChoice | None:
    """Rules 3 and 5 from serial calls: threads, or None when threads must be tried.

    ``cpu_share`` is CPU time over the time the calls could have run (see
    :data:`WAITING_CPU_SHARE`). ``chunked``: the calls go to workers in chunks (a map
    stage's items), so rule 5's bound is :data:`MIN_PROCESS_SECONDS_PER_CHUNKED_ITEM`.
    ``min_seconds_per_call`` replaces that bound; it exists only for the deprecated
    arguments of ``weft.exec.calibrate``.
    """
    if min_seconds_per_call is None:
        min_seconds_per_call = MIN_PROCESS_SECONDS_PER_CHUNKED_ITEM if chunked else MIN_PROCESS_SECONDS_PER_CALL
    if seconds_per_call < min_seconds_per_call:
        return BackendChoice(backend="thread", serial_seconds_per_item=seconds_per_call,
                             reason=f"calls take {seconds_per_call * 1e6:.0f} us: too short to repay sending "
                                    "them to processes")
    if cpu_share < WAITING_CPU_SHARE:
        return BackendChoice(backend="thread", serial_seconds_per_item=seconds_per_call,
                             reason=f"calls spend {1 - cpu_share:.0%} of their time waiting (I/O): "
                                    "threads overlap the waits")
    return None


def after_thread_trial(*, seconds_per_call: float, cores_used: float, cores: int, efficiency: float,
                       final: bool, min_parallel_cores: float = MIN_PARALLEL_CORES,
                       min_thread_efficiency: float = MIN_THREAD_EFFICIENCY) -> BackendChoice | None:
    """Rule 6 from one trial on threads.

    ``cores_used`` is the process's CPU time over the trial's wall time, capped at
    ``cores``; ``efficiency`` the trial's rate over ``cores`` x the serial rate. Returns
    threads when both pass; processes when they fail and ``final``; else None (try again:
    load from elsewhere only ever lowers the figures, so a GIL-bound function can never
    pass a second trial, while a GIL-releasing one can fail one on a busy machine).
    The two thresholds exist only for the deprecated arguments of ``weft.exec.calibrate``.
    """
    cores_used = min(cores_used, float(cores))
    measured = f"threads used {cores_used:.1f} of {cores} cores ({efficiency:.0%} parallel efficiency)"
    if cores_used >= min(min_parallel_cores, cores) and efficiency >= min_thread_efficiency:
        backend, why = "thread", "the function releases the GIL, so threads run it in parallel"
    elif final:
        backend, why = "process", "the function holds the GIL, so processes run it in parallel"
    else:
        return None
    return BackendChoice(backend=backend, reason=f"{measured}: {why}", serial_seconds_per_item=seconds_per_call,
                         thread_efficiency=efficiency, cores_used=cores_used)


def by_throughput(rates: dict[str, float], *, current: str, margin: float = SWITCH_MARGIN) -> BackendChoice:
    """Rule 7: the backend that delivered the most items/s in a trial; ``current`` (the one
    in use) is kept unless another beat it by ``margin``."""
    if current not in rates:
        raise ConfigError(f"no throughput measured for the backend in use {current!r}: got {sorted(rates)}")
    fastest = max(rates, key=lambda name: rates[name])
    backend = fastest if rates[fastest] >= margin * rates[current] else current
    figures = ", ".join(f"{name} {rate:,.0f} items/s" for name, rate in sorted(rates.items()))
    if backend == current and fastest != current:
        why = f"{current} kept: {fastest} was not {margin:g}x faster"
    else:
        why = f"{backend} delivered the most"
    return BackendChoice(backend=backend, reason=f"measured {figures}: {why}",
                         throughputs=tuple(sorted(rates.items())))


def describe_rule() -> str:
    """One sentence on what ``backend='auto'`` does, for the CLI."""
    return (f"backend='auto' measures the function itself: threads if it waits or releases the GIL "
            f"(threads use >= {MIN_PARALLEL_CORES:g} cores at >= {MIN_THREAD_EFFICIENCY:.0%} parallel "
            "efficiency), otherwise processes; threads whenever the GIL is off.")


def validate_backend(name: object, *, what: str = "backend", exclude: tuple[str, ...] = ()) -> str:
    """``name`` if it is a registered backend (see ``weft.exec.register``), else ConfigError."""
    from weft.exec._registry import available_backends

    allowed = [b for b in available_backends() if b not in exclude]
    if not isinstance(name, str) or name not in allowed:
        raise ConfigError(f"{what} must be one of {allowed} (backends added with weft.exec.register "
                          f"count too), got {name!r}")
    return name
