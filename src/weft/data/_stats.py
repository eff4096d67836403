"""What each stage did, and one sentence naming the bottleneck."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PipelineStatistics", "StageStatistics", "verdict"]

# What the verdict calls a bottleneck. These are judgement lines on ratios the
# statistics measure, not values fitted to a benchmark: each separates two situations
# the advice treats differently, with room for measurement noise on either side.

#: A consumer that waited for data less than this share of its time is itself the
#: bottleneck (the rest is start-up and jitter): the pipeline keeps up.
CONSUMER_KEEPS_UP = 0.10
#: A stage busy at least half the time can limit the pipeline; a map whose workers were
#: busy less than that was held up by something other than its function.
BUSY = 0.5
#: Workers busy at least this share of the time are saturated; threads computing on less
#: than this share of their usable cores are waiting (I/O, locks, contended objects).
SATURATED = 0.8
#: Threads that computed on fewer cores than this mostly wait (sleeps, I/O).
WAITING_CORES = 0.6
#: Busy threads that computed on fewer cores than this (and on at least WAITING_CORES)
#: while two or more cores were usable ran one at a time: one core, measured with noise.
GIL_BOUND_CORES = 1.3
#: The pipeline waiting on a map's workers this share of the time makes that map the
#: bottleneck even when no stage is busy (moving items or start-up costs dominate).
WAITED_ON_WORKERS = 0.3
#: A process map whose workers' result pools carried less than this share of its result
#: bytes paid a fresh shared-memory segment for most arrays: the verdict says so.
POOLED_ENOUGH = 0.5
#: A first map that waited on its input more than this share of the time names the source.
WAITED_ON_SOURCE = 0.5


@dataclass(frozen=True, kw_only=True)
class StageStatistics:
    """One stage's counters since the current pass started.

    ``busy_fraction`` is the share of worker capacity spent inside the stage's own
    function (for a map with workers: summed over workers, divided by
    ``workers x elapsed``). ``wait_upstream_seconds`` is time the stage sat waiting for
    its input; ``wait_downstream_seconds`` time it held results nobody asked for yet
    (a full prefetch queue) or, for a map, time spent waiting on its workers.
    ``computing_cores`` (maps with workers) is the CPU time of the stage's calls divided by
    elapsed time: how many cores' worth the workers actually computed. ``workers_reason``
    (maps with ``workers="auto"``) says how ``workers`` was sized.
    """

    index: int
    name: str
    kind: str
    items: int
    items_per_second: float
    busy_fraction: float
    wait_upstream_seconds: float
    wait_downstream_seconds: float
    elapsed_seconds: float
    backend: str = "inline"
    workers: int = 1
    reason: str = "runs in the thread that pulls from it"
    skipped: int = 0
    retried: int = 0
    computing_cores: float | None = None
    extra: dict[str, float] = field(default_factory=dict)
    #: with ``workers="auto"``: the count it settled on (``workers``) and why
    workers_reason: str = ""

    def line(self) -> str:
        text = (f"{self.index}. {self.name:<12} {self.items:>9} items {self.items_per_second:>10.1f}/s "
                f"busy {self.busy_fraction:>4.0%}  backend {self.backend}")
        if self.workers > 1 or self.workers_reason:
            text += f" x{self.workers}"
        if self.workers_reason:
            text += " (workers='auto')"
        if self.skipped:
            text += f"  skipped {self.skipped}"
        return text


@dataclass(frozen=True, kw_only=True)
class PipelineStatistics:
    """Per-stage statistics (source first) plus how long the consumer waited for items."""

    stages: tuple[StageStatistics, ...]
    consumer_wait_seconds: float
    elapsed_seconds: float
    verdict: str

    @property
    def consumer_wait_fraction(self) -> float:
        return min(1.0, self.consumer_wait_seconds / self.elapsed_seconds) if self.elapsed_seconds > 0 else 0.0

    def __str__(self) -> str:
        lines = [s.line() for s in self.stages]
        lines.append(f"consumer waited {self.consumer_wait_fraction:.0%} of {self.elapsed_seconds:.2f} s")
        lines.append(self.verdict)
        return "\n".join(lines)


def _on_cluster(stage: StageStatistics) -> bool:
    """A map whose executor ran calls on a cluster's nodes (it counts them: ray, dask)."""
    return stage.kind == "map" and "nodes" in stage.extra


def _cluster_verdict(stage: StageStatistics, *, waited: float | None = None) -> str:
    """Who limits a map on a cluster: its workers there, or the driver that feeds them.

    Busy workers mean the cluster computes as fast as it can; idle ones while the
    pipeline waited on them mean the driver (reading the source, sending items, taking
    results) cannot keep them fed.
    """
    head = f"stage {stage.index} `{stage.name}` on the {stage.backend} cluster"
    if waited is not None:
        head += f" (the pipeline waited on it {waited:.0%} of the time)"
    nodes = int(stage.extra.get("nodes", 0))
    if stage.busy_fraction >= SATURATED:
        return (f"the cluster is the bottleneck: {head} kept its {stage.workers} workers busy "
                f"{stage.busy_fraction:.0%} on {nodes} node(s); add nodes and raise workers=, or make the "
                "function cheaper")
    return (f"the driver is the bottleneck: {head} kept its {stage.workers} workers busy only "
            f"{stage.busy_fraction:.0%}: the driver does not send items and take results fast enough. Send "
            "less per item (paths rather than decoded data: read inside the mapped function), keep the "
            "stages before it light, or prefetch after it")


def _advice(stage: StageStatistics, *, gil: bool, cores: int) -> str:
    """What to try for ``stage``; never the backend it runs on, and under ``auto`` never a
    backend it ruled out (the advice then gives auto's reason for its choice)."""
    return _not_in_use(_raw_advice(stage, gil=gil, cores=cores), stage)


def _not_in_use(text: str, stage: StageStatistics) -> str:
    """``text`` without a suggestion of the backend ``stage`` runs on, or, under ``auto``,
    of a backend it ruled out (its reason is given instead)."""
    in_use = stage.backend.split(":")[-1]
    for name in ("thread", "process"):
        phrase = f"try backend='{name}'"
        if phrase not in text:
            continue
        if name == in_use:
            text = text.replace(f"{phrase} or fewer, larger items", "try fewer, larger items")
            text = text.replace(phrase, "try fewer, larger items")
        elif stage.backend.startswith("auto:"):
            text = _without_suggestion(text, phrase) + f"; backend='auto' chose {in_use} ({stage.reason})"
    return text


def _without_suggestion(text: str, phrase: str) -> str:
    """``text`` with the clause that suggests ``phrase`` taken out, so what is left still
    reads as a sentence (the forms :func:`_raw_advice` and :func:`verdict` write)."""
    for clause, instead in ((f"{phrase} or fewer, larger items", "try fewer, larger items"),
                            (f", {phrase} if they contend", ""),
                            (f": if its calls hold the GIL, {phrase}", ""),
                            (f"; {phrase}", "")):
        if clause in text:
            return text.replace(clause, instead)
    return text.replace(phrase, "")


def _more_threads(stage: StageStatistics) -> str:
    """Advice for a map whose threads wait: more of them, or, when ``workers="auto"``
    sized them, what its measurement found (adding threads is what it tried)."""
    if stage.workers_reason:
        return stage.workers_reason
    return "add workers, threads overlap waits (or workers='auto' to size them by measured throughput)"


def _pool_advice(stage: StageStatistics) -> str:
    """What to say of a process map whose result arrays did not fit its workers' result
    pools (each such array then costs a fresh segment): empty when most did fit."""
    pooled = stage.extra.get("results pooled")
    if pooled is None or pooled >= POOLED_ENOUGH:
        return ""
    pool_mb = stage.extra.get("result pool MB", 0.0)
    if pool_mb <= 0:
        return ("; its result arrays came back each in a fresh shared-memory segment: the result pools are "
                "off (result_pool_bytes=0, or too little free space under /dev/shm)")
    return (f"; only {pooled:.0%} of its result bytes fit the workers' result pools ({pool_mb:.0f} MB each), "
            f"the rest came each in a fresh shared-memory segment: raise "
            f"backend_options={{'result_pool_bytes': {int(pool_mb * 2e6)}}}")


def _raw_advice(stage: StageStatistics, *, gil: bool, cores: int) -> str:
    if stage.kind != "map":
        return "it runs inline: move the work into a .map(..., workers=N)"
    if stage.backend == "inline" or stage.workers <= 1:
        return f"give it more workers (workers={max(2, cores)})"
    used = stage.computing_cores
    if stage.backend.endswith("thread") and stage.busy_fraction >= BUSY:
        # Measured, not assumed: busy threads that compute on about one core are held by
        # the GIL; far below one core, their calls wait; near all cores, they compute.
        if used is None:
            if gil:
                return "on threads with the GIL on: if its calls hold the GIL, try backend='process'"
        elif gil and min(stage.workers, cores) >= 2 and WAITING_CORES <= used < GIL_BOUND_CORES:
            return (f"GIL-bound on threads: its {stage.workers} threads computed on only {used:.1f} "
                    f"of {cores} cores; try backend='process'")
        elif used < WAITING_CORES:
            return (f"its calls mostly wait (its {stage.workers} threads computed on {used:.1f} cores): "
                    f"{_more_threads(stage)}")
        elif used < SATURATED * min(stage.workers, cores):
            return (f"its {stage.workers} threads are busy but compute on only {used:.1f} of {cores} cores: "
                    "they wait (I/O, locks, contended objects); add workers if it is I/O, "
                    "try backend='process' if they contend")
        elif stage.workers >= cores:
            return (f"its threads compute on {used:.1f} of {cores} cores: make the function cheaper "
                    "or add machines")
    if stage.workers < cores:
        return f"try more workers ({stage.workers} now, {cores} cores)"
    if stage.workers > cores and stage.busy_fraction >= SATURATED:
        # more threads than cores are all busy: they wait (I/O) or they compute; say both
        if stage.workers_reason:
            return f"all {stage.workers} workers are busy: {_more_threads(stage)}"
        return (f"all {stage.workers} workers are busy: if its calls wait on I/O, add workers "
                "(threads overlap waits); if they compute, make the function cheaper")
    if stage.busy_fraction < SATURATED:
        return ("its workers are not saturated: moving items or start-up costs the rest; "
                f"try backend='thread' or fewer, larger items{_pool_advice(stage)}")
    return f"all {cores} cores are busy: make the function cheaper or add machines"


def verdict(stages: tuple[StageStatistics, ...], *, consumer_wait_fraction: float, gil: bool, cores: int) -> str:
    """A one-line diagnosis: which stage limits throughput, and what to try."""
    if not stages or stages[-1].items == 0:
        return "no items yet: nothing to diagnose"
    if consumer_wait_fraction < CONSUMER_KEEPS_UP:
        return (f"the consumer is the bottleneck: it waited for data only {consumer_wait_fraction:.0%} "
                "of the time, so the pipeline keeps up")
    working = [s for s in stages if s.kind in ("map", "filter", "batch", "shuffle")]
    if working:
        worst = max(working, key=lambda s: s.busy_fraction)
        if worst.busy_fraction >= BUSY and _on_cluster(worst):
            return _cluster_verdict(worst)
        if worst.busy_fraction >= BUSY:
            return (f"stage {worst.index} `{worst.name}` is the bottleneck: busy {worst.busy_fraction:.0%}, "
                    f"{_advice(worst, gil=gil, cores=cores)}")
    maps = [s for s in stages if s.kind == "map" and s.backend != "inline"]
    if maps:
        slowest = max(maps, key=lambda s: s.wait_downstream_seconds)
        share = slowest.wait_downstream_seconds / max(slowest.elapsed_seconds, 1e-9)
        if share >= WAITED_ON_WORKERS and _on_cluster(slowest):
            return _cluster_verdict(slowest, waited=share)
        if share >= WAITED_ON_WORKERS:
            advice = _advice(slowest, gil=gil, cores=cores)
            if slowest.busy_fraction < BUSY:
                advice = _not_in_use("yet its workers were idle half the time or more: start-up or moving items "
                                     "dominates (a short run, or large items sent to processes); "
                                     f"try backend='thread'{_pool_advice(slowest)}", slowest)
            return (f"stage {slowest.index} `{slowest.name}` is the bottleneck: the pipeline waited on its "
                    f"workers {share:.0%} of the time (busy {slowest.busy_fraction:.0%}), {advice}")
    source = stages[0]
    first_map = next((s for s in stages if s.kind == "map"), None)
    if first_map is not None and first_map.wait_upstream_seconds > WAITED_ON_SOURCE * first_map.elapsed_seconds:
        if _on_cluster(first_map):
            return (f"the driver is the bottleneck: the source `{source.name}` on the driver feeds stage "
                    f"{first_map.index} `{first_map.name}` on the {first_map.backend} cluster too slowly (it waited on "
                    f"its input {first_map.wait_upstream_seconds / first_map.elapsed_seconds:.0%} of the time); "
                    "move the reading into the mapped function so it runs on the cluster")
        return (f"the source `{source.name}` is the bottleneck: stage {first_map.index} `{first_map.name}` "
                f"waited on its input {first_map.wait_upstream_seconds / first_map.elapsed_seconds:.0%} of the time; "
                "read in parallel with .map(read, workers=N) or add .prefetch(n)")
    return (f"no single stage dominates (consumer waited {consumer_wait_fraction:.0%} of the time): "
            "add .prefetch(n) at the end, or more workers to the busiest map")
