"""Stopping early leaves nothing behind; memory stays bounded however long the stream."""

from __future__ import annotations

import gc
import multiprocessing.resource_tracker
import os
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

import pytest

import data_workloads as w
import weft.data as wd
from conftest import SHM_DIR, child_pids, wait_until, weft_threads


@pytest.fixture(autouse=True, scope="module")
def _resource_tracker_running() -> None:
    """multiprocessing starts one resource-tracker process on the first spawn and keeps it
    for the life of the interpreter; start it up front so no_leaks does not count it."""
    multiprocessing.resource_tracker.ensure_running()


def _pipes() -> dict[str, Callable[[], wd.Pipeline]]:
    return {
        "thread": lambda: wd.from_range(10_000).map(w.jitter, workers=3, backend="thread").batch(4).prefetch(2),
        "thread-unordered": lambda: wd.from_range(10_000).map(w.jitter, workers=3, backend="thread",
                                                             ordered=False).prefetch(2),
        "process": lambda: wd.from_range(10_000).map(w.megabyte, workers=2, backend="process").prefetch(2),
        "two-maps": lambda: (wd.from_range(10_000).map(w.inc, workers=2, backend="thread").prefetch(2)
                             .map(w.double, workers=2, backend="process").prefetch(1)),
    }


PIPES = sorted(_pipes())


@pytest.mark.parametrize("kind", PIPES)
def test_break_stops_everything(kind: str, no_leaks: None) -> None:
    pipe = _pipes()[kind]()
    for i, _ in enumerate(pipe):
        if i == 20:
            break
    assert pipe.state_dict()["stages"] is not None  # still readable after the pass stopped


@pytest.mark.parametrize("kind", PIPES)
def test_close_stops_everything(kind: str, no_leaks: None) -> None:
    pipe = _pipes()[kind]()
    it = iter(pipe)
    next(it)
    pipe.close()
    with pytest.raises(StopIteration):
        next(it)


@pytest.mark.parametrize("kind", PIPES)
def test_garbage_collection_stops_everything(kind: str, no_leaks: None) -> None:
    it = iter(_pipes()[kind]())
    next(it)
    del it
    gc.collect()


@pytest.mark.parametrize("kind", PIPES)
def test_consumer_exception_stops_everything(kind: str, no_leaks: None) -> None:
    pipe = _pipes()[kind]()
    with pytest.raises(KeyError), pipe:
        for i, _ in enumerate(pipe):
            if i == 5:
                raise KeyError("the training step failed")


def test_pipeline_error_stops_everything(no_leaks: None) -> None:
    pipe = wd.from_range(100).map(w.fail_on_7, workers=2, backend="process").prefetch(2)
    with pytest.raises(ValueError, match="seven"):
        list(pipe)


def test_close_while_a_worker_is_busy(no_leaks: None) -> None:
    started, gate = threading.Event(), threading.Event()

    def held(x: int) -> int:
        started.set()
        gate.wait(timeout=60)  # bounded only so a broken close cannot hang the suite
        return x

    pipe = wd.from_iterable(range(4)).map(held, workers=2, backend="thread").prefetch(1)
    it = iter(pipe)
    assert it is not None
    # the prefetch pump is now waiting on a worker that waits on the gate
    assert started.wait(timeout=60)
    gate.set()  # let the running calls finish; close must not wait for the rest
    pipe.close()
    with pytest.raises(StopIteration):
        next(it)


def test_a_new_pass_closes_the_previous_one(no_leaks: None) -> None:
    pipe = wd.from_range(1000).map(w.inc, workers=2, backend="thread")
    first = iter(pipe)
    next(first)
    assert list(pipe)[:3] == [1, 2, 3]
    with pytest.raises(StopIteration):
        next(first)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
# a million items take about a minute on a quiet 2-core machine and about five beside a
# CPU-bound process on every core (3.13t, measured on 50,000): the bound only catches a hang
@pytest.mark.timeout(900)
def test_a_million_megabyte_items_in_flat_memory(no_leaks: None) -> None:
    """1,000,000 fresh 1 MB items (1 TB in total) through map, filter, batch and prefetch."""
    n = 1_000_000
    pipe = (wd.from_range(n).map(w.megabyte, workers=2, backend="thread")
            .filter(lambda a: a.size > 0).batch(8, collate=list).prefetch(4))
    start = _rss_mb()
    peak = start
    count = 0
    for i, batch in enumerate(pipe):
        count += len(batch)
        if i % 4096 == 0:
            peak = max(peak, _rss_mb())
    assert count == n
    assert peak - start < 300, f"RSS grew by {peak - start:.0f} MB"


class _Payload:
    """A result a weak reference can watch (a stand-in for a large array)."""


@pytest.mark.parametrize("ordered", [True, False])
def test_results_handed_on_are_freed_without_the_cyclic_collector(ordered: bool, no_leaks: None) -> None:
    """A result the consumer dropped is freed by reference counting alone. Were it part
    of a reference cycle, large results would pile up between collections: a map that
    allocates few objects per item seldom triggers the collector (4 MB results grew a
    pipeline to 2 GB that way)."""
    made: list[weakref.ref[_Payload]] = []

    def make(i: int) -> _Payload:
        payload = _Payload()
        made.append(weakref.ref(payload))
        return payload

    n, in_flight = 600, 64  # the stage's own bound on items pulled and not yet handed on
    pipe = wd.from_range(n).map(make, workers=2, backend="thread", ordered=ordered, max_in_flight=in_flight)
    most_alive = 0
    gc.disable()
    try:
        for i, item in enumerate(pipe):
            del item
            if i % 50 == 0:
                most_alive = max(most_alive, sum(ref() is not None for ref in made))
    finally:
        gc.enable()
    assert len(made) == n
    # alive: the items in flight and the chunk being handed on (no bigger than the bound)
    assert most_alive <= 2 * in_flight, f"{most_alive} results alive after the consumer dropped them"


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_persistent_workers_serve_every_pass_until_close(backend: str, no_leaks: None) -> None:
    base = wd.from_range(200).map(w.inc, workers=2, backend=backend)
    assert list(base.persistent_workers()) == list(range(1, 201)), "results are unchanged"
    threads_before, children_before = weft_threads(), child_pids()

    def workers() -> tuple[set[object], set[int]]:
        return weft_threads() - threads_before, child_pids() - children_before

    pipe = wd.from_range(200).map(w.worker_id, workers=2, backend=backend).persistent_workers()
    assert len(list(pipe)) == 200
    first = workers()
    assert first[0] and (first[1] or backend == "thread"), "the workers outlive the pass"
    for _ in range(2):  # the usual `for epoch in range(n): for batch in pipe:` loop
        assert len(list(pipe)) == 200
        assert workers() == first, "every pass runs on the workers the first one started"
    it = iter(pipe)
    next(it)
    del it  # a pass left early also hands its workers on
    assert len(list(pipe)) == 200 and workers() == first
    pipe.close()
    assert wait_until(lambda: workers() == (set(), set())), "close() stops them"
    assert len(list(pipe)) == 200, "a closed pipeline can run again, on new workers"
    pipe.close()


def test_persistent_workers_stop_when_the_pipeline_is_collected(no_leaks: None) -> None:
    def one_epoch() -> list[int]:
        pipe = wd.from_range(100).map(w.inc, workers=2, backend="process").batch(10).persistent_workers()
        return [int(x) for b in pipe for x in b]

    assert one_epoch() == list(range(1, 101))
    gc.collect()


class _FirstPullSeesWorkers:
    """A source that records, on its first item, the weft worker processes already started."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.workers_at_first_pull: int | None = None

    def __iter__(self):  # type: ignore[no-untyped-def]
        import multiprocessing

        for i in range(self.n):
            if i == 0:
                self.workers_at_first_pull = sum(1 for p in multiprocessing.active_children()
                                                 if p.name == "weft-process-worker")
            yield i


def test_process_map_starts_its_workers_before_the_first_item_is_pulled(no_leaks: None) -> None:
    source = _FirstPullSeesWorkers(40)
    pipe = wd.from_iterable(source).map(w.inc, workers=2, backend="process")
    assert list(pipe) == [i + 1 for i in range(40)]
    assert source.workers_at_first_pull == 2


class _SwitchAfter:
    """Stands in for the stage's throughput trials: says "switch" after ``after`` chunks."""

    def __init__(self, current: str, after: int) -> None:
        self.current = current
        self.target = "process" if current == "thread" else "thread"
        self.after = after
        self.seen: list[str] = []
        self.rounds = 1
        self.decision = None
        self.measuring = False

    def finished(self, backend: str, items: int, seconds: float) -> str:
        from weft.exec._policy import BackendChoice

        self.seen.append(backend)
        if len(self.seen) == self.after:
            self.current = self.target
            self.decision = BackendChoice(backend=self.target, reason="switched by the test",
                                          throughputs=((self.target, 2.0), ("other", 1.0)))
        return self.current


def test_auto_switching_backend_mid_run_hands_on_every_item_in_order(monkeypatch: pytest.MonkeyPatch,
                                                                      no_leaks: None) -> None:
    from weft.data import _map_backend

    made: list[_SwitchAfter] = []

    def plan(choice: object, backend: str, **_: object) -> _SwitchAfter:
        made.append(_SwitchAfter(backend, after=3))
        return made[-1]

    monkeypatch.setattr(_map_backend, "plan_trials", plan)
    pipe = wd.from_range(400).map(w.inc, workers=2, backend="auto")
    it = iter(pipe)
    assert list(it) == [i + 1 for i in range(400)]
    (trials,) = made
    assert trials.target in trials.seen, "chunks ran on the backend switched to"
    stage = next(s for s in it.statistics().stages if s.kind == "map")
    assert stage.backend == f"auto:{trials.target}"
    assert stage.reason == "switched by the test"
    assert stage.extra["other items/s"] == 1.0


_FIELDS = '''
import numpy as np

def field(i):
    """A 4 MB result (the size whose pipelines first showed the hang)."""
    x = np.linspace(0.0, 1.0 + i % 13, 1024, dtype=np.float32)
    out = np.multiply.outer(x, x[::-1])
    np.sin(out, out=out)
    return out
'''

_LEFT_OPEN = '''
import os, sys
import weft.data as wd
from fields import field

if __name__ == "__main__":
    backend = sys.argv[1]
    pipe = wd.from_iterable(list(range(2000))).map(field, workers=2, backend=backend).batch(4).prefetch(2)
    batches = iter(pipe)
    for _ in range(4):
        next(batches)
    print(os.getpid(), flush=True)
'''


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["thread", "process"])
def test_a_program_that_leaves_a_pass_open_ends_cleanly(backend: str, tmp_path: Path) -> None:
    """A script whose last statement leaves a prefetching pass half read: the interpreter
    exits (a pass collected during finalization used to wait forever for its frozen
    prefetch thread), says nothing on stderr (process workers terminated by
    multiprocessing's exit handler used to be restarted, with a warning each), and leaves
    no shared-memory segment of its own."""
    (tmp_path / "fields.py").write_text(_FIELDS)
    script = tmp_path / "left_open.py"
    script.write_text(_LEFT_OPEN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    # the bound is for a hang only: the script takes about a second
    out = subprocess.run([sys.executable, str(script), backend], capture_output=True, text=True,
                         timeout=100, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    pid = out.stdout.split()[0]
    if os.path.isdir(SHM_DIR):
        assert not [name for name in os.listdir(SHM_DIR) if name.startswith(f"weft-{pid}-")]
