"""workers="auto": the thread-count controller on a synthetic throughput model (an injected
clock, never wall time), and a map stage that sizes its threads with it."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

import data_workloads as w
import weft.data as wd
from weft.data import _chunks, _map, _sizing
from weft.data._sizing import DEFAULT_MAX_THREADS, ThreadSizing
from weft.errors import ConfigError

LATENCY = 0.05  # seconds per call of the modelled waiting work


class Model:
    """A stage under a synthetic load: ``rate(threads)`` items/s from the workers, a source
    that delivers at most ``source`` items/s, and a clock that advances by exactly the
    time each completed item took at that rate."""

    def __init__(self, rate: Callable[[int], float], *, source: float = float("inf")) -> None:
        self.rate = rate
        self.source = source
        self.now = 0.0
        self.waited = 0.0  # seconds the stage spent pulling from its source

    def run(self, sizing: ThreadSizing, items: int) -> list[int]:
        """Feed ``items`` completions one at a time; the counts the sizing asked for, in order."""
        counts = []
        for _ in range(items):
            delivered = min(self.rate(sizing.workers), self.source)
            step = 1 / delivered
            self.now += step
            self.waited += step * (delivered / self.source)  # each pull costs 1/source seconds
            new = sizing.completed(1, LATENCY, self.waited)
            if new is not None:
                counts.append(new)
        return counts


def _sizing_on(model: Model, *, start: int = 2, maximum: int = DEFAULT_MAX_THREADS,
               bound: int | None = None) -> ThreadSizing:
    return ThreadSizing(start=start, maximum=maximum, bound=bound, clock=lambda: model.now)


def waiting(plateau: int) -> Callable[[int], float]:
    """Waiting work: each thread finishes a call per LATENCY, up to ``plateau`` threads'
    worth (the remote service's capacity)."""
    return lambda n: min(n, plateau) / LATENCY


def test_grows_while_throughput_rises_and_stops_at_the_plateau() -> None:
    model = Model(waiting(24))
    sizing = _sizing_on(model)
    counts = model.run(sizing, 3000)
    # 2 -> 32 each doubling gains >= 25 %; 64 threads deliver what 32 do: back to 32
    assert counts == [4, 8, 16, 32, 64, 32]
    assert sizing.workers == 32 and sizing.phase == "settled"
    assert [n for n, _ in sizing.history] == [2, 4, 8, 16, 32, 64]
    assert sizing.history[-1][1] == pytest.approx(sizing.history[-2][1])
    assert "settled on 32 threads: throughput levelled off" in sizing.reason
    assert "32: 480 items/s" in sizing.reason


def test_keeps_the_larger_count_when_it_was_measurably_faster() -> None:
    model = Model(waiting(36))  # 16 -> 32: +100 %, climbs; 32 -> 64: +12.5 %, stops there
    sizing = _sizing_on(model, start=16)
    counts = model.run(sizing, 3000)
    assert [n for n, _ in sizing.history] == [16, 32, 64]
    assert counts == [32, 64] and sizing.workers == 64
    assert "settled on 64 threads" in sizing.reason and "rose only 13%" in sizing.reason


def test_shrinks_back_when_throughput_falls_after_a_step() -> None:
    # contention: beyond 16 threads, each extra thread costs throughput
    model = Model(lambda n: (n if n <= 16 else max(1.0, 16 - (n - 16) / 4)) / LATENCY)
    sizing = _sizing_on(model, start=4)
    counts = model.run(sizing, 3000)
    assert counts == [8, 16, 32, 16]
    assert sizing.workers == 16 and "fell" in sizing.reason


@pytest.mark.parametrize("maximum", [48, 5, 1])
def test_never_exceeds_the_maximum(maximum: int) -> None:
    model = Model(waiting(10_000))
    sizing = _sizing_on(model, maximum=maximum)
    counts = model.run(sizing, 20_000)
    assert max([sizing.workers, *counts]) <= maximum
    assert sizing.workers == maximum and sizing.phase == "settled"
    assert f"max_workers={maximum}" in sizing.reason and "still rose" in sizing.reason


def test_never_exceeds_the_in_flight_bound() -> None:
    model = Model(waiting(10_000))
    sizing = _sizing_on(model, bound=20)
    counts = model.run(sizing, 5000)
    assert counts == [4, 8, 16, 20] and sizing.workers == 20
    assert "max_in_flight=20" in sizing.reason


def test_shrinks_when_the_source_is_the_bottleneck_and_grows_when_it_speeds_up() -> None:
    model = Model(waiting(10_000), source=100.0)  # 64 threads could do 1,280/s; the source gives 100
    sizing = _sizing_on(model, start=64)
    counts = model.run(sizing, 200)
    # Little's law: 100 items/s x 0.05 s = 5 threads busy; 1.5x headroom -> 8
    assert counts == [8] and sizing.workers == 8 and sizing.phase == "fed"
    assert "waited on its source 100% of the time, and 8 threads keep up with the 100 items/s" in sizing.reason
    model.source = float("inf")
    counts = model.run(sizing, 3000)
    assert counts[0] == 16 and sizing.workers > 8, "a faster source lets it grow again"


def test_a_new_pass_measures_afresh() -> None:
    model = Model(waiting(24))
    sizing = _sizing_on(model)
    model.run(sizing, 3000)
    model.now += 3600.0  # an hour between passes is no throughput measurement
    model.waited = 0.0  # the next pass's stage counts its waits from zero
    sizing.resume()
    assert model.run(sizing, 1000) == [] and sizing.workers == 32


# -- the map stage --------------------------------------------------------------------------
def _pool_threads(prefix: str) -> int:
    return sum(t.name.startswith(prefix) for t in threading.enumerate())


def test_a_pipeline_with_auto_workers_sizes_its_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The consumer advances a synthetic clock by 1/rate(threads) per item it receives, so
    the stage measures exactly the model's throughput at each thread count."""
    model = Model(waiting(24))
    monkeypatch.setattr(_sizing, "monotonic", lambda: model.now)
    # one item per chunk, so that each completion the stage measures is one item received
    monkeypatch.setattr(_chunks, "TARGET_CHUNK_SECONDS", dict.fromkeys(_chunks.TARGET_CHUNK_SECONDS, 0.0))
    names: set[str] = set()

    def fetch(x: int) -> int:
        names.add(threading.current_thread().name)
        return x * 2

    pipe = wd.from_range(1500).map(fetch, workers="auto", backend="thread")
    out = []
    seen = []
    for item in pipe:
        out.append(item)
        workers = pipe.statistics().stages[1].workers
        seen.append(workers)
        model.now += 1 / model.rate(workers)
    assert out == [2 * i for i in range(1500)], "every item, once, in order"
    stage = pipe.statistics().stages[1]
    assert stage.workers == 32 > wd_cores()
    assert max(seen) == 64 and seen[0] == wd_cores()
    assert "settled on 32 threads: throughput levelled off" in stage.workers_reason
    assert "(workers='auto')" in str(pipe.statistics())
    prefix = next(iter(names)).rsplit("-", 1)[0] + "-"
    assert len([n for n in names if n.startswith(prefix)]) >= 2
    assert _pool_threads(prefix) == 0, "closing the pass ends every thread, retired or not"


def wd_cores() -> int:
    from weft import runtime

    return runtime.usable_cores()


def test_auto_workers_with_the_auto_backend_on_waiting_work() -> None:
    import time

    def wait(x: int) -> int:
        time.sleep(0.001)  # the work itself waits: what the rule measures
        return x + 1

    pipe = wd.from_range(60).map(wait, workers="auto")
    assert list(pipe) == list(range(1, 61))
    stage = pipe.statistics().stages[1]
    assert stage.backend == "auto:thread"
    assert stage.workers_reason.startswith("workers='auto'")


def test_auto_workers_on_processes_are_the_usable_cores() -> None:
    pipe = wd.from_range(8).map(w.inc, workers="auto", backend="process")
    assert list(pipe) == list(range(1, 9))
    stage = pipe.statistics().stages[1]
    assert stage.workers == wd_cores()
    assert stage.workers_reason == f"workers='auto' sizes threads; on process: the usable cores ({wd_cores()})"


def test_the_verdict_tells_the_sizing_instead_of_add_workers() -> None:
    from weft.data._stats import StageStatistics, verdict

    sized = StageStatistics(index=1, name="fetch", kind="map", items=100, items_per_second=10.0, busy_fraction=0.9,
                            wait_upstream_seconds=0.0, wait_downstream_seconds=0.0, elapsed_seconds=10.0,
                            backend="thread", workers=32, computing_cores=0.05,
                            workers_reason="workers='auto' settled on 32 threads: throughput levelled off (...)")
    text = verdict((sized,), consumer_wait_fraction=0.9, gil=True, cores=2)
    assert "workers='auto' settled on 32 threads" in text and "add workers" not in text
    fixed = StageStatistics(**{**sized.__dict__, "workers_reason": ""})
    assert "workers='auto' to size them" in verdict((fixed,), consumer_wait_fraction=0.9, gil=True, cores=2)


@pytest.mark.parametrize("workers", ["many", "AUTO", 2.5, -1, True])
def test_workers_must_be_a_count_or_auto(workers: object) -> None:
    with pytest.raises(ConfigError, match=r"workers must be an integer >= 0 .* or 'auto'.*got " + repr(workers)
                       .replace(".", r"\.")):
        wd.from_range(3).map(w.inc, workers=workers)  # type: ignore[arg-type]


def test_max_workers_needs_auto_and_a_positive_count() -> None:
    with pytest.raises(ConfigError, match="max_workers=8 caps workers='auto'"):
        wd.from_range(3).map(w.inc, workers=4, max_workers=8)
    with pytest.raises(ConfigError, match="max_workers must be an integer >= 1, got 0"):
        wd.from_range(3).map(w.inc, workers="auto", max_workers=0)
    assert "workers='auto'" in repr(wd.from_range(3).map(w.inc, workers="auto", max_workers=8))


def test_auto_workers_grow_also_when_a_batch_follows(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch after the map (whose chunks would otherwise hold whole batches) does not stop
    the thread count from growing: chunks stay the sizer's size, so a batch of waits is not
    one thread's queue and the in-flight bound is not counted in whole batches."""
    model = Model(waiting(24))
    monkeypatch.setattr(_sizing, "monotonic", lambda: model.now)
    monkeypatch.setattr(_chunks, "TARGET_CHUNK_SECONDS", dict.fromkeys(_chunks.TARGET_CHUNK_SECONDS, 0.0))
    chunk_sizes: list[int] = []
    run_chunk = _map.run_chunk

    def recording(fn: Callable[[int], int], values: list[int], *args: object) -> object:
        chunk_sizes.append(len(values))
        return run_chunk(fn, values, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(_map, "run_chunk", recording)
    pipe = wd.from_range(3000).map(lambda x: x * 2, workers="auto", backend="thread").batch(8)
    out: list[int] = []
    for batch in pipe:
        out.extend(int(v) for v in batch)
        model.now += len(batch) / model.rate(pipe.statistics().stages[1].workers)
    assert out == [2 * i for i in range(3000)]
    stage = pipe.statistics().stages[1]
    assert stage.workers >= 16 > wd_cores(), stage.workers_reason
    assert max(chunk_sizes) < 8, f"chunks of whole batches under workers='auto': {sorted(set(chunk_sizes))}"
