"""Statistics per stage, the bottleneck verdict and the progress display."""

from __future__ import annotations

import dataclasses
import io

import pytest

import data_workloads as w
import weft.data as wd
from weft.data._stats import StageStatistics, verdict


def test_stats_per_stage_after_a_pass() -> None:
    pipe = wd.from_range(100).map(w.inc, workers=2, backend="thread").filter(w.not_div3).batch(10).prefetch(2)
    assert pipe.statistics().verdict.startswith("not started")
    batches = list(pipe)
    s = pipe.statistics()
    assert [st.kind for st in s.stages] == ["source", "map", "filter", "batch", "prefetch"]
    assert [st.index for st in s.stages] == [0, 1, 2, 3, 4]
    assert s.stages[0].items == 100 and s.stages[1].items == 100
    assert s.stages[2].items == sum(len(b) for b in batches) == 67
    assert s.stages[4].items == len(batches) == 7
    assert all(st.items_per_second > 0 and 0.0 <= st.busy_fraction <= 1.0 for st in s.stages)
    assert s.stages[1].backend == "thread" and s.stages[1].workers == 2 and "requested" in s.stages[1].reason
    assert s.elapsed_seconds > 0 and 0.0 <= s.consumer_wait_fraction <= 1.0
    assert s.stages[1].computing_cores is not None and s.stages[1].computing_cores >= 0.0
    text = str(s)
    assert "inc" in text and s.verdict in text


def test_statistics_are_frozen_and_stats_is_a_deprecated_alias() -> None:
    pipe = wd.from_range(10).map(w.inc, workers=0)
    assert list(pipe) == list(range(1, 11))
    s = pipe.statistics()
    assert isinstance(s, wd.PipelineStatistics) and isinstance(s.stages[1], wd.StageStatistics)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.verdict = "changed"  # type: ignore[misc]
    with pytest.warns(DeprecationWarning, match=r"use Pipeline\.statistics\(\)"):
        old = pipe.stats()
    assert old is s, "the alias returns what statistics() returns"
    with pytest.warns(DeprecationWarning, match="weft.data.PipelineStatistics"):
        assert wd.PipelineStats is wd.PipelineStatistics
    with pytest.warns(DeprecationWarning, match="weft.data.StageStatistics"):
        assert wd.StageStats is wd.StageStatistics
    with pytest.raises(AttributeError, match="no attribute 'Stats'"):
        _ = wd.Stats  # type: ignore[attr-defined]


def test_stats_while_running() -> None:
    pipe = wd.from_range(1000).map(w.inc, workers=2, backend="thread")
    it = iter(pipe)
    for _ in range(10):
        next(it)
    assert pipe.statistics().stages[-1].items == 10
    del it


def _stage(index: int, name: str, *, kind: str = "map", busy: float = 0.0, backend: str = "thread",
           workers: int = 4, wait_down: float = 0.0, computing: float | None = None,
           extra: dict[str, float] | None = None) -> StageStatistics:
    return StageStatistics(index=index, name=name, kind=kind, items=100, items_per_second=10.0, busy_fraction=busy,
                      wait_upstream_seconds=0.0, wait_downstream_seconds=wait_down, elapsed_seconds=10.0,
                      backend=backend, workers=workers, computing_cores=computing, extra=extra or {})


_POOLS_OVERFLOWED = {"results pooled": 0.2, "result pool MB": 64.0}


@pytest.mark.parametrize(("stages", "wait", "gil", "expected"), [
    ((_stage(0, "files", kind="source"), _stage(1, "read", busy=0.1), _stage(2, "decode", busy=0.97, computing=1.0)),
     0.8, True, "stage 2 `decode` is the bottleneck: busy 97%, GIL-bound on threads: its 4 threads computed "
                "on only 1.0 of 2 cores; try backend='process'"),
    ((_stage(0, "files", kind="source"), _stage(1, "decode", busy=0.97)),
     0.8, True, "if its calls hold the GIL, try backend='process'"),
    ((_stage(0, "urls", kind="source"), _stage(1, "fetch", busy=0.99, workers=32, computing=0.1)),
     0.8, True, "its calls mostly wait (its 32 threads computed on 0.1 cores): add workers"),
    ((_stage(0, "files", kind="source"), _stage(1, "decode", busy=0.95, workers=2, computing=1.9)),
     0.8, True, "its threads compute on 1.9 of 2 cores: make the function cheaper"),
    ((_stage(0, "files", kind="source"), _stage(1, "decode", busy=0.95, workers=2, computing=1.0)),
     0.8, False, "its 2 threads are busy but compute on only 1.0 of 2 cores"),
    ((_stage(0, "files", kind="source"), _stage(1, "decode", busy=0.97, backend="process", workers=2)),
     0.8, True, "all 2 cores are busy"),
    ((_stage(0, "files", kind="source"), _stage(1, "decode", busy=0.9, backend="auto:thread", workers=1)),
     0.8, False, "give it more workers"),
    ((_stage(0, "files", kind="source"), _stage(1, "decode", busy=0.2)),
     0.05, True, "the consumer is the bottleneck"),
    ((_stage(0, "files", kind="source"), _stage(1, "decode", busy=0.2, backend="process", wait_down=8.0)),
     0.9, True, "stage 1 `decode` is the bottleneck: the pipeline waited on its workers 80%"),
    # result arrays that did not fit the workers' pools: the verdict says how to give them room
    ((_stage(0, "files", kind="source"), _stage(1, "decode", busy=0.2, backend="process", wait_down=8.0,
                                                 extra=_POOLS_OVERFLOWED)),
     0.9, True, "only 20% of its result bytes fit the workers' result pools (64 MB each), the rest came each in "
                "a fresh shared-memory segment: raise backend_options={'result_pool_bytes': 128000000}"),
    ((_stage(0, "files", kind="source"), _stage(1, "decode", busy=0.6, backend="process", workers=2,
                                                 extra=_POOLS_OVERFLOWED)),
     0.9, True, "its workers are not saturated: moving items or start-up costs the rest; try backend='thread' "
                "or fewer, larger items; only 20% of its result bytes fit"),
    ((_stage(0, "files", kind="source"), _stage(1, "decode", busy=0.6, backend="process", workers=2,
                                                 extra={"results pooled": 0.0, "result pool MB": 0.0})),
     0.9, True, "the result pools are off"),
])
def test_verdict_names_the_bottleneck(stages: tuple[StageStatistics, ...], wait: float, gil: bool,
                                      expected: str) -> None:
    assert expected in verdict(stages, consumer_wait_fraction=wait, gil=gil, cores=2)


def test_verdict_is_silent_on_result_pools_that_carried_most_results() -> None:
    stages = (_stage(0, "files", kind="source"),
              _stage(1, "decode", busy=0.2, backend="process", wait_down=8.0,
                     extra={"results pooled": 0.9, "result pool MB": 64.0}))
    text = verdict(stages, consumer_wait_fraction=0.9, gil=True, cores=2)
    assert text.endswith("try backend='thread'") and "result_pool_bytes" not in text


def test_progress_yields_everything_and_prints_the_verdict() -> None:
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(file=buffer, width=120, force_terminal=False)
    pipe = wd.from_range(200).map(w.inc, workers=2, backend="thread")
    assert list(wd.progress(pipe, total=200, console=console)) == list(range(1, 201))
    out = buffer.getvalue()
    assert "200/200" in out and pipe.statistics().verdict[:30] in out
    assert sum(1 for _ in pipe.progress(total=200)) == 200


def test_advice_never_names_the_backend_in_use() -> None:
    idle_threads = (_stage(0, "files", kind="source"), _stage(1, "decode", busy=0.2, backend="thread", wait_down=8.0))
    text = verdict(idle_threads, consumer_wait_fraction=0.9, gil=True, cores=2)
    assert "the pipeline waited on its workers" in text
    assert "backend='thread'" not in text, text


def test_advice_under_auto_points_at_its_measurement_not_the_other_backend() -> None:
    stage = dataclasses.replace(_stage(1, "decode", busy=0.97, backend="auto:thread", computing=1.0),
                                reason="measured thread 900 items/s, process 400 items/s: thread delivered the most")
    text = verdict((_stage(0, "files", kind="source"), stage), consumer_wait_fraction=0.8, gil=True, cores=2)
    assert "backend='process'" not in text, text
    assert text.endswith("; backend='auto' chose thread (measured thread 900 items/s, process 400 items/s: "
                         "thread delivered the most)"), text


_PROCESS_WON = "measured process 17,399 items/s, thread 6,183 items/s: process delivered the most"


@pytest.mark.parametrize(("stage", "wait", "gil", "advice"), [
    # threads that wait on something: the I/O advice stays, the backend auto ruled out goes
    (_stage(1, "parse", busy=0.9, backend="auto:thread", workers=2, computing=1.3), 0.99, False,
     "its 2 threads are busy but compute on only 1.3 of 2 cores: they wait (I/O, locks, contended objects); "
     "add workers if it is I/O; backend='auto' chose thread (the GIL is off)"),
    # processes not saturated: fewer, larger items stays a suggestion
    (_stage(1, "parse", busy=0.7, backend="auto:process"), 0.99, True,
     "its workers are not saturated: moving items or start-up costs the rest; try fewer, larger items; "
     f"backend='auto' chose process ({_PROCESS_WON})"),
    # the pipeline waited on idle processes
    (_stage(1, "parse", busy=0.4, backend="auto:process", wait_down=8.0), 0.9, True,
     "start-up or moving items dominates (a short run, or large items sent to processes); "
     f"backend='auto' chose process ({_PROCESS_WON})"),
    # GIL-bound threads that auto measured against processes
    (_stage(1, "parse", busy=0.97, backend="auto:thread", workers=2, computing=1.0), 0.8, True,
     "GIL-bound on threads: its 2 threads computed on only 1.0 of 2 cores; backend='auto' chose thread ("),
])
def test_advice_under_auto_reads_as_a_sentence(stage: StageStatistics, wait: float, gil: bool, advice: str) -> None:
    reason = _PROCESS_WON if stage.backend == "auto:process" else (
        "the GIL is off" if not gil else "measured thread 900 items/s, process 400 items/s: thread delivered the most")
    stage = dataclasses.replace(stage, reason=reason)
    text = verdict((_stage(0, "files", kind="source"), stage), consumer_wait_fraction=wait, gil=gil, cores=2)
    assert advice in text, text
    assert "try backend=" not in text and ",;" not in text and "  " not in text, text
