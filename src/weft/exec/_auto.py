"""The ``auto`` backend: threads or processes, chosen by measuring the function itself.

The rule, its thresholds and the reasons users read live in :mod:`weft.exec._policy`;
this module only measures. :meth:`AutoExecutor.map` asks the policy first (GIL off,
one usable core, a function that cannot be pickled: threads, nothing to measure);
otherwise :func:`calibrate` times the first items of the input serially and then on
``workers`` threads, and hands each measurement to the policy for its verdict.

Calibration results are not thrown away: they are yielded first. ``submit`` without
a prior ``map`` has no sample to measure, so on a GIL build it assumes CPU-bound
Python and uses processes.
"""

from __future__ import annotations

import itertools
import pickle
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import replace
from typing import Any, TypeVar

from weft import runtime
from weft.exec import _policy, _start
from weft.exec._base import Executor, ExecutorStatistics, annotate
from weft.exec._policy import BackendChoice

__all__ = ["AutoExecutor", "BackendTrials", "Calibration", "calibrate"]

T = TypeVar("T")
R = TypeVar("R")

#: What the calibration measured and decided: the policy's :class:`BackendChoice`
#: (the name ``Calibration`` is kept for code written against earlier releases).
Calibration = BackendChoice

#: Serial calls timed at most, after one untimed warm-up call (imports, caches): enough
#: to average out timer noise on short calls; slower calls stop at the budget first.
_MAX_SERIAL_CALLS = 16
#: Share of CALIBRATION_BUDGET_SECONDS the serial calls may take ...
_SERIAL_BUDGET_SHARE = 1 / 3
#: ... and each thread trial (there are at most _THREAD_TRIALS of them).
_TRIAL_BUDGET_SHARE = 1 / 2
#: Calls per worker in one thread trial, at most: several rounds, so that starting the
#: threads and the last straggler are a small part of the trial's wall time.
_MAX_TRIAL_ROUNDS = 8
#: A failed thread trial is run once more (see ``_policy.after_thread_trial`` for why
#: the better of two is safe); a GIL-bound function fails both.
_THREAD_TRIALS = 2
#: Where Linux reports the calling thread's scheduler statistics: on-CPU time, time
#: spent runnable but waiting for a CPU, and time slices (all in nanoseconds).
_SCHEDSTAT = "/proc/thread-self/schedstat"

_DEPRECATED_THRESHOLDS = ("min_parallel_cores", "min_thread_efficiency", "min_process_item_seconds",
                          "budget_seconds")


def _waiting_for_cpu() -> float | None:
    """Seconds the calling thread has spent runnable but without a CPU, None if unknown.

    A CPU-bound call on a busy machine spends part of its wall time in the run queue;
    without this it would look like a call that waits on I/O.
    """
    try:
        with open(_SCHEDSTAT, "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def calibrate(fn: Callable[[T], R], items: Iterator[tuple[int, T]], *, workers: int, chunked: bool = False,
              **deprecated: float) -> tuple[Calibration, list[tuple[int, R]]]:
    """Measure ``fn`` on items from ``items`` (pairs of index and item).

    Serially, it times calls on the wall clock and on the thread's CPU clock: a call
    that spends most of the time it could run off the CPU is waiting (I/O) and threads
    overlap the waits. A CPU-bound call is then run on ``workers`` threads, and the
    process's CPU use and the threads' speed-up decide (see :mod:`weft.exec._policy`).

    ``chunked``: the calls will go to workers in chunks (a map stage's items), so a
    shorter call still repays a process (:data:`~weft.exec._policy.MIN_PROCESS_SECONDS_PER_CHUNKED_ITEM`).

    Returns the decision and the ``(index, result)`` pairs computed while measuring.
    The keyword arguments ``min_parallel_cores``, ``min_thread_efficiency``,
    ``min_process_item_seconds`` and ``budget_seconds`` are deprecated: the thresholds
    are the policy's named constants.
    """
    unknown = sorted(set(deprecated) - set(_DEPRECATED_THRESHOLDS))
    if unknown:
        raise TypeError(f"calibrate() got unexpected keyword arguments {unknown}")
    if deprecated:
        warnings.warn(f"calibrate({', '.join(sorted(deprecated))}=...) is deprecated and will be removed: the "
                      "thresholds are the named constants of weft.exec._policy", DeprecationWarning, stacklevel=2)
    min_parallel_cores = deprecated.get("min_parallel_cores", _policy.MIN_PARALLEL_CORES)
    min_thread_efficiency = deprecated.get("min_thread_efficiency", _policy.MIN_THREAD_EFFICIENCY)
    min_seconds_per_call = deprecated.get("min_process_item_seconds")  # None: the policy's bound
    budget = deprecated.get("budget_seconds", _policy.CALIBRATION_BUDGET_SECONDS)

    from weft.exec._thread import ThreadExecutor

    done: list[tuple[int, R]] = []

    def run(index: int, item: T) -> None:
        try:
            done.append((index, fn(item)))
        except BaseException as exc:
            raise annotate(exc, fn, index, item) from None

    first = next(items, None)  # warm-up call: imports, caches
    if first is None:
        return _policy.too_few_items(items=0), done
    run(*first)
    serial_count, serial_wall, serial_cpu, serial_queued = 0, 0.0, 0.0, 0.0
    while serial_wall < budget * _SERIAL_BUDGET_SHARE and serial_count < _MAX_SERIAL_CALLS:
        pair = next(items, None)
        if pair is None:
            return _policy.too_few_items(items=len(done)), done
        queued0 = _waiting_for_cpu()
        wall0, cpu0 = time.perf_counter(), time.thread_time()
        run(*pair)
        serial_cpu += time.thread_time() - cpu0
        serial_wall += time.perf_counter() - wall0
        queued1 = _waiting_for_cpu()
        if queued0 is not None and queued1 is not None:
            serial_queued += queued1 - queued0
        serial_count += 1
    per_item = serial_wall / serial_count
    could_run = max(serial_wall - serial_queued, serial_cpu)
    cpu_share = serial_cpu / could_run if could_run > 0 else 1.0
    choice = _policy.after_serial_calls(per_item, cpu_share, chunked=chunked, min_seconds_per_call=min_seconds_per_call)
    if choice is not None:
        return choice, done

    rounds = _MAX_TRIAL_ROUNDS
    if per_item > 0:
        rounds = max(1, min(rounds, int(budget * _TRIAL_BUDGET_SHARE / per_item)))
    cores = min(workers, runtime.usable_cores())
    best: tuple[float, float] | None = None
    for _trial in range(_THREAD_TRIALS):
        batch = list(itertools.islice(items, workers * rounds))
        if len(batch) < workers:
            for pair in batch:
                run(*pair)
            if best is None:
                return _policy.too_few_items(items=len(done), seconds_per_call=per_item), done
            break
        with ThreadExecutor(workers=workers) as pool:
            wall0, cpu0 = time.perf_counter(), time.process_time()
            futures: list[Future[R]] = [pool.submit(fn, item) for _, item in batch]
            for (index, item), future in zip(batch, futures, strict=True):
                try:
                    done.append((index, future.result()))
                except BaseException as exc:
                    raise annotate(exc, fn, index, item) from None
            wall = time.perf_counter() - wall0
            cores_used = (time.process_time() - cpu0) / wall if wall > 0 else 0.0
        # the trial's rate over the ideal one, cores x the serial rate
        efficiency = len(batch) * per_item / (wall * cores) if wall > 0 else 0.0
        if best is None or (cores_used, efficiency) > best:
            best = (cores_used, efficiency)
        choice = _policy.after_thread_trial(seconds_per_call=per_item, cores_used=cores_used, cores=cores,
                                            efficiency=efficiency, final=False,
                                            min_parallel_cores=min_parallel_cores,
                                            min_thread_efficiency=min_thread_efficiency)
        if choice is not None:
            return choice, done
    assert best is not None
    cores_used, efficiency = best
    final = _policy.after_thread_trial(seconds_per_call=per_item, cores_used=cores_used, cores=cores,
                                       efficiency=efficiency, final=True, min_parallel_cores=min_parallel_cores,
                                       min_thread_efficiency=min_thread_efficiency)
    assert final is not None
    return final, done


#: Weight of the newest chunk in the running average of seconds per item that
#: :class:`BackendTrials` watches for a change of cost.
_COST_SMOOTHING = 0.3
#: Chunks averaged after a decision before its cost is the baseline to compare with (the
#: first chunks of a stage are its smallest, and their cost the noisiest).
_BASELINE_CHUNKS = 5
#: Chunks in a row whose cost is out of the baseline's band before a round starts:
#: one slow chunk (a page fault storm, a busy machine) is not a change of the function.
_CHANGED_CHUNKS = 4


class BackendTrials:
    """Which backend a map stage under ``auto`` runs next, by throughput measured on its
    own items (rule 7 of :mod:`weft.exec._policy`): nothing is computed twice.

    The stage reports every chunk it hands on (:meth:`finished`) and sends new chunks
    to :attr:`current`. A *round* measures each backend in turn for
    ``THROUGHPUT_TRIAL_SECONDS`` of delivered items (counted from that backend's first
    finished chunk, so a worker process's start-up is not held against it), then
    :func:`~weft.exec._policy.by_throughput` decides. A round starts when the stage
    asks (processes chosen by measuring threads: ``start``) or when the seconds per item
    the workers report move by ``REDECIDE_COST_FACTOR`` from the baseline after the last
    decision, in the direction that could favour the other backend (up on threads, down
    on processes). ``clock`` is injectable, so the rule can be tested without wall time.
    """

    def __init__(self, *, current: str, candidates: tuple[str, ...] = ("thread", "process"),
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.current = current
        self.candidates = candidates
        self.decision: BackendChoice | None = None
        self.rounds = 0
        self._clock = clock
        self._cost: float | None = None
        self._baseline: float | None = None
        self._baseline_chunks = 0
        self._changed_chunks = 0
        self._rates: dict[str, float] = {}
        self._todo: list[str] = []
        self._kept = current  # the backend in use when the round began
        self._trial_start: float | None = None
        self._trial_items = 0

    @property
    def measuring(self) -> bool:
        return bool(self._todo)

    def start(self, todo: list[str], *, measured: dict[str, float] | None = None) -> None:
        """Begin a round that measures ``todo`` in order (``measured``: rates already known)."""
        self.rounds += 1
        self._kept = self.current
        self._rates = dict(measured or {})
        self._todo = list(todo)
        self._begin_trial()

    def _begin_trial(self) -> None:
        self.current = self._todo[0]
        self._trial_start = None
        self._trial_items = 0

    def finished(self, backend: str, items: int, seconds: float) -> str:
        """A chunk of ``items`` that ran on ``backend`` was handed on; ``seconds`` is what it
        cost its worker (CPU seconds where measured). Returns the backend new chunks go to."""
        if items <= 0:
            return self.current
        if self._todo:
            self._trial(backend, items)
        elif backend == self.current:
            self._watch_cost(seconds / items)
        return self.current

    def _trial(self, backend: str, items: int) -> None:
        if backend != self._todo[0]:
            return  # a chunk sent before this trial began
        now = self._clock()
        if self._trial_start is None:
            self._trial_start = now  # its items ran before the clock started: not counted
            return
        self._trial_items += items
        elapsed = now - self._trial_start
        if elapsed < _policy.THROUGHPUT_TRIAL_SECONDS:
            return
        self._rates[backend] = self._trial_items / elapsed
        self._todo.pop(0)
        if self._todo:
            self._begin_trial()
            return
        kept = self._kept if self._kept in self._rates else backend
        self.decision = _policy.by_throughput(self._rates, current=kept)
        self.current = self.decision.backend
        self._cost = self._baseline = None
        self._baseline_chunks = 0

    def _watch_cost(self, per_item: float) -> None:
        if self._cost is None:
            self._cost = per_item
        else:
            self._cost += _COST_SMOOTHING * (per_item - self._cost)
        if self._baseline is None:
            self._baseline_chunks += 1
            if self._baseline_chunks >= _BASELINE_CHUNKS:
                self._baseline = self._cost
            return
        # each chunk's own cost, not the average: one outlier must not stay out of band
        if self._moved_toward_another_backend(per_item):
            self._changed_chunks += 1
        else:
            self._changed_chunks = 0
        if self._changed_chunks >= _CHANGED_CHUNKS:
            self._changed_chunks = 0
            others = [c for c in self.candidates if c != self.current]
            self.start([self.current, *others])

    def _moved_toward_another_backend(self, per_item: float) -> bool:
        """Whether a chunk's cost per item left the baseline's band in the direction that
        could favour another backend: a call that grows costlier repays processes' fixed
        cost per chunk better, a cheaper one repays it worse. (The first large results of a
        stage on threads cost 3x the later ones, in page faults: taken for a change either
        way, that started a trial of processes they lost.)"""
        baseline, factor = self._baseline, _policy.REDECIDE_COST_FACTOR
        if baseline is None or baseline <= 0:
            return False
        rose, fell = per_item > baseline * factor, per_item < baseline / factor
        if self.current == "thread":
            return rose
        if self.current == "process":
            return fell
        return rose or fell


def unmeasured_rule(fn: Callable[..., Any], workers: int) -> BackendChoice | None:
    """The policy's choice without measuring ``fn``, or None when it must be measured."""
    ruled = _policy.interpreter_rule(workers)
    if ruled is not None:
        return ruled
    script = _start.unguarded_main_script()
    if script is not None:
        return _policy.unguarded_script(script)
    try:
        pickle.dumps(fn)
    except Exception as exc:
        return _policy.unpicklable(exc)
    return None


class AutoExecutor(Executor):
    """Chooses threads or processes on first use; see :mod:`weft.exec._policy` for the rule."""

    backend = "auto"

    def __init__(self, *, workers: int, reason: str = "", **process_options: Any) -> None:
        super().__init__(workers=workers, reason=reason or "not chosen yet")
        self._process_options = process_options
        self._inner: Executor | None = None
        self.calibration: Calibration | None = None

    @property
    def chosen(self) -> str | None:
        """The backend in use, or None before the first call."""
        return None if self._inner is None else self._inner.backend

    def _resolve(self, decision: BackendChoice) -> Executor:
        from weft.exec._process import ProcessExecutor
        from weft.exec._thread import ThreadExecutor

        if self._inner is None:
            self.calibration = decision
            self.reason = decision.reason
            if decision.backend == "process":
                self._inner = ProcessExecutor(workers=self.workers, reason=decision.reason, **self._process_options)
            else:
                self._inner = ThreadExecutor(workers=self.workers, reason=decision.reason)
        return self._inner

    def _submit(self, fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[R]:
        inner = self._inner or self._resolve(unmeasured_rule(fn, self.workers) or _policy.unmeasured())
        return inner.submit(fn, *args, **kwargs)

    def map_indexed(self, fn: Callable[[T], R], items: Iterable[T], *, ordered: bool = True,
                    max_in_flight: int | None = None) -> Iterator[tuple[int, R]]:
        if self._inner is not None:
            return self._inner.map_indexed(fn, items, ordered=ordered, max_in_flight=max_in_flight)
        return self._calibrated_map(fn, items, ordered=ordered, max_in_flight=max_in_flight)

    def _calibrated_map(self, fn: Callable[[T], R], items: Iterable[T], *, ordered: bool,
                        max_in_flight: int | None) -> Iterator[tuple[int, R]]:
        pairs = iter(enumerate(items))
        rule = unmeasured_rule(fn, self.workers)
        if rule is not None:
            early: list[tuple[int, R]] = []
            decision = rule
        else:
            _start.exit_if_unguarded_worker()  # a worker re-running an unguarded script stops before measuring
            decision, early = calibrate(fn, pairs, workers=self.workers)
        inner = self._resolve(decision)
        yield from early
        # calibration ran exactly the prefix it consumed; indices continue after it
        offset = len(early)
        rest = (item for _, item in pairs)
        for index, result in inner.map_indexed(fn, rest, ordered=ordered, max_in_flight=max_in_flight):
            yield offset + index, result

    def statistics(self) -> ExecutorStatistics:
        if self._inner is None:
            return super().statistics()
        return replace(self._inner.statistics(), backend=f"auto:{self._inner.backend}")

    def _shutdown(self, *, cancel: bool, timeout: float | None) -> None:
        if self._inner is not None:
            self._inner.close(cancel=cancel, timeout=timeout)
