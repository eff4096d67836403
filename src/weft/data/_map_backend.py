"""A map stage under ``backend="auto"``: the backend it starts on, and what it measures next.

weft.exec's rule (:mod:`weft.exec._policy`) decides. :func:`choose` asks it, measuring
the stage's own first items when the rule needs a measurement (``weft.exec.calibrate``);
those items' results are kept and handed on as the stage's first chunk, not computed
twice. :func:`plan_trials` then sets up the throughput trials of rule 7, which the stage
follows chunk by chunk (``MapNode._follow_trials``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from weft import runtime
from weft.data._work import ChunkResult, run_chunk

if TYPE_CHECKING:
    from weft.data._node import Key
    from weft.exec._auto import BackendTrials
    from weft.exec._policy import BackendChoice

__all__ = ["Choice", "choose", "plan_trials"]


@dataclass(frozen=True, kw_only=True)
class Choice:
    """What :func:`choose` decided, and the items it computed to decide it."""

    decision: BackendChoice
    #: whether the function was measured (else the interpreter or pickling ruled)
    measured: bool
    #: the items pulled while measuring, in pull order: (key, upstream state after it, ordinal)
    pulled: tuple[tuple[Key, Any, int], ...] = ()
    #: their results, one chunk in pull order (None when nothing was pulled)
    first_chunk: ChunkResult | None = None
    #: the source ran out while measuring
    exhausted: bool = False


def choose(fn: Callable[[Any], Any], *, workers: int, retries: int,
           pull: Callable[[], tuple[Key, Any, Any, int]]) -> Choice:
    """weft.exec's backend rule for ``fn`` on ``workers``, measured on items from ``pull``
    (a stage's next upstream item: key, value, state after it, ordinal; StopIteration at
    the end) when the rule needs a measurement."""
    from weft.exec import calibrate
    from weft.exec._auto import unmeasured_rule
    from weft.exec._start import exit_if_unguarded_worker

    exit_if_unguarded_worker()  # a worker re-running an unguarded script stops here
    ruled = unmeasured_rule(fn, workers)
    if ruled is not None:
        return Choice(decision=ruled, measured=False)

    pulled: list[tuple[Key, Any, int]] = []
    exhausted = False

    def items() -> Iterator[tuple[int, Any]]:
        nonlocal exhausted
        while True:
            try:
                key, value, post, ordinal = pull()
            except StopIteration:
                exhausted = True
                return
            pulled.append((key, post, ordinal))
            yield len(pulled) - 1, value

    def measured(value: Any) -> ChunkResult:
        return run_chunk(fn, (value,), retries, False)

    decision, done = calibrate(measured, items(), workers=workers, chunked=True)
    chunks = [chunk for _, chunk in sorted(done, key=lambda pair: pair[0])]
    first = None
    if chunks:
        errors = {i: c.errors[0] for i, c in enumerate(chunks) if c.errors}
        first = ChunkResult([c.results[0] for c in chunks], errors or None, sum(c.retried for c in chunks),
                            sum(c.seconds for c in chunks))
    return Choice(decision=decision, measured=True, pulled=tuple(pulled), first_chunk=first, exhausted=exhausted)


def plan_trials(choice: Choice | None, backend: str, *, workers: int, sizes_threads: bool) -> BackendTrials | None:
    """Under auto on a GIL build: the throughput trials of rule 7 (weft.exec._policy),
    when both threads and processes could run the function. ``sizes_threads``: a
    ``workers="auto"`` stage sizes its thread count."""
    from weft.exec._auto import BackendTrials

    if choice is None or not choice.measured or workers > runtime.usable_cores():
        return None  # ruled without measuring (GIL off, one core, unpicklable), or I/O-sized
    if backend == "thread" and sizes_threads:
        # the thread count moves, so would a throughput measured to compare them with processes
        return None
    trials = BackendTrials(current=backend)
    decision = choice.decision
    if backend == "process" and decision.thread_efficiency and decision.serial_seconds_per_item:
        cores = min(workers, runtime.usable_cores())
        thread_rate = decision.thread_efficiency * cores / decision.serial_seconds_per_item
        trials.start(["process"], measured={"thread": thread_rate})
    return trials
