"""Stages: map (every backend, ordered or not, error policies), filter, batch, unbatch,
take, skip, prefetch."""

from __future__ import annotations

import threading
import traceback
from pathlib import Path

import numpy as np
import pytest
from resume_runs import run_with_stops

import data_workloads as w
import weft.data as wd
from weft.errors import ConfigError

BACKENDS = ["serial", "thread", "process", "auto"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_map_ordered_and_unordered(backend: str) -> None:
    ordered = list(wd.from_range(50).map(w.jitter, workers=2, backend=backend))
    assert ordered == list(range(50))
    unordered = list(wd.from_range(50).map(w.jitter, workers=2, backend=backend, ordered=False))
    assert sorted(unordered) == list(range(50))


def test_map_reports_backend_and_reason() -> None:
    pipe = wd.from_range(10).map(w.inc, workers=2, backend="thread", name="plus-one")
    assert list(pipe) == list(range(1, 11))
    stage = pipe.statistics().stages[1]
    assert (stage.name, stage.kind, stage.backend, stage.workers, stage.items) == ("plus-one", "map", "thread", 2, 10)
    assert "thread" in stage.reason
    auto = wd.from_range(10).map(w.inc, workers=2)
    list(auto)
    chosen = auto.statistics().stages[1]
    assert chosen.backend.startswith("auto:") and chosen.reason


def test_map_runs_on_a_backend_added_to_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    import weft.exec
    from weft.exec import ThreadExecutor, _registry

    # registrations made here end with the test
    monkeypatch.setattr(_registry, "_registered", dict(_registry._registered))
    made: list[ThreadExecutor] = []

    def mine(*, workers: int, **options: object) -> ThreadExecutor:
        executor = ThreadExecutor(workers=workers, reason="threads registered as 'mine'")
        made.append(executor)
        return executor

    with pytest.raises(ConfigError, match="backend"):
        wd.from_range(3).map(w.inc, backend="mine")
    weft.exec.register("mine", mine)
    for ordered in (True, False):
        pipe = wd.from_range(100).map(w.inc, workers=2, backend="mine", ordered=ordered)
        assert sorted(pipe) == list(range(1, 101))
        assert made[-1].statistics().completed > 0, "the calls ran on the registered executor"
        stage = pipe.statistics().stages[1]
        assert (stage.backend, stage.workers, stage.items) == ("mine", 2, 100)
        assert stage.reason == "threads registered as 'mine'"
    assert len(made) == 2 and all(e.closed for e in made), "each pass closed its executor"


def test_auto_never_sends_an_unpicklable_function_to_processes() -> None:
    offset = 3
    pipe = wd.from_range(200).map(lambda x: x + offset, workers=2)
    assert list(pipe) == [x + 3 for x in range(200)]
    assert pipe.statistics().stages[1].backend == "auto:thread"


@pytest.mark.parametrize("backend", BACKENDS)
def test_error_raises_with_source_index_and_original_traceback(backend: str) -> None:
    pipe = wd.from_range(20).shuffle(seed=1).map(w.fail_on_7, workers=2, backend=backend)
    with pytest.raises(ValueError, match="seven is not allowed") as info:
        list(pipe)
    notes = " ".join(getattr(info.value, "__notes__", []))
    assert "source index 7" in notes and "fail_on_7" in notes
    text = "".join(traceback.format_exception(info.value))
    assert "fail_on_7" in text and "data_workloads.py" in text  # the frame that raised


@pytest.mark.parametrize("backend", ["serial", "thread", "process"])
def test_error_skip_drops_and_counts(backend: str) -> None:
    pipe = wd.from_range(20).map(w.fail_on_7, workers=2, backend=backend, on_error="skip")
    assert list(pipe) == [x for x in range(20) if x != 7]
    assert pipe.statistics().stages[1].skipped == 1


@pytest.mark.parametrize("backend", ["serial", "thread", "process"])
def test_error_retry_then_succeed_or_raise(backend: str, tmp_path: Path) -> None:
    items = [(str(tmp_path), i) for i in range(5)]
    pipe = wd.from_iterable(items).map(w.flaky, workers=2, backend=backend, on_error="retry", retries=2)
    assert list(pipe) == list(range(5))
    assert pipe.statistics().stages[1].retried == 10
    fresh = tmp_path / "again"
    fresh.mkdir()
    again = wd.from_iterable([(str(fresh), 0)]).map(w.flaky, backend=backend, on_error="retry", retries=1)
    with pytest.raises(ConnectionError, match="transient failure 2") as raised:
        list(again)
    assert "on_error='retry' tried it 1 more time, failing each time" in "\n".join(raised.value.__notes__)


def test_map_validates_its_arguments() -> None:
    with pytest.raises(ConfigError, match="backend"):
        wd.from_range(3).map(w.inc, backend="gpu")
    with pytest.raises(ConfigError, match="on_error"):
        wd.from_range(3).map(w.inc, on_error="ignore")
    with pytest.raises(ConfigError, match="workers"):
        wd.from_range(3).map(w.inc, workers=-1)
    with pytest.raises(ConfigError, match="callable"):
        wd.from_range(3).map(3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_in_flight"):
        wd.from_range(3).map(w.inc, max_in_flight=0)


def test_process_map_moves_arrays_and_batches() -> None:
    pipe = wd.from_range(12).map(w.megabyte, workers=2, backend="process").batch(4)
    batches = list(pipe)
    assert [b.shape for b in batches] == [(4, 1 << 20)] * 3
    assert [int(b[i, 0]) for b in batches for i in range(4)] == list(range(12))


@pytest.mark.parametrize("fn", [w.row_of, w.ragged_row])
def test_process_map_results_are_exact_whether_packed_or_not(fn) -> None:  # type: ignore[no-untyped-def]
    # Same-shaped arrays come back from a worker as one stacked array and are handed on as
    # rows; ragged ones one by one. Either way every item is its own, in order.
    items = list(wd.from_range(300).map(fn, workers=2, backend="process"))
    assert [int(a[0]) for a in items] == list(range(300))
    for i, a in enumerate(items):
        np.testing.assert_array_equal(a, fn(i))
        assert a.dtype == fn(i).dtype
    items[0][:] = -1  # a handed-on row is writable and owned by nobody else in the stream
    assert int(items[1][0]) == 1


@pytest.mark.parametrize(("size", "drop_last"), [(64, False), (10, False), (10, True), (150, False)])
def test_batches_of_packed_rows_equal_stacked_items(size: int, drop_last: bool) -> None:
    # Batches after a process map are built from slices of the chunks workers packed
    # (one slice, or a concatenation across chunk borders): same values as stacking.
    n = 777
    pipe = wd.from_range(n).map(w.row_of, workers=2, backend="process").batch(size, drop_last=drop_last)
    batches = list(pipe)
    expected = [np.stack([w.row_of(i) for i in range(a, min(a + size, n))]) for a in range(0, n, size)]
    if drop_last:
        expected = [b for b in expected if len(b) == size]
    assert len(batches) == len(expected)
    for got, want in zip(batches, expected, strict=True):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype
    listed = list(wd.from_range(100).map(w.row_of, workers=2, backend="process").batch(size, collate=list))
    assert [int(r[0]) for b in listed for r in b] == list(range(100)), "a custom collate gets the rows"


def test_ragged_rows_across_packed_chunks_get_the_pad_collate_advice() -> None:
    # rows change length at item 500: a batch spanning two packed chunks of different
    # row shapes must fail as a batch of ragged items does, naming the way out
    # (one worker, 4 in flight: a first chunk of one item, then chunks of two, so from
    # source value 1 on, 498-499 and 500-501 come packed in two chunks of different row shapes)
    pipe = wd.from_range(1, 700).map(w.ragged_at_500, workers=1, backend="process", max_in_flight=4).batch(64)
    with pytest.raises(ConfigError, match="pad_collate"):
        list(pipe)


def test_resume_between_batches_of_packed_rows() -> None:
    def make() -> wd.Pipeline:
        return wd.from_range(500).map(w.row_of, workers=2, backend="process").batch(32)

    seen = [int(r[0]) for b in run_with_stops(make, [5]) for r in b]
    assert seen == list(range(500))


def test_packing_keeps_non_arrays_and_mixed_results_as_lists() -> None:
    from weft.data._work import run_chunk

    same = run_chunk(w.row_of, range(5), 0, True)[0]
    assert isinstance(same, np.ndarray) and same.shape == (5, 8)
    assert [int(r[0]) for r in same] == [0, 1, 2, 3, 4]
    assert run_chunk(w.ragged_row, range(4), 0, True)[0].__class__ is list
    assert run_chunk(w.inc, range(4), 0, True)[0] == [1, 2, 3, 4]
    assert isinstance(run_chunk(w.row_of, range(5), 0, False)[0], list), "threads share results as they are"
    failed = run_chunk(w.fail_on_7, range(5, 9), 0, True)
    assert isinstance(failed.results, list) and failed.errors is not None and set(failed.errors) == {2}


def test_filter_batch_default_collate_and_drop_last() -> None:
    pipe = wd.from_range(20).filter(w.not_div3).batch(4)
    batches = list(pipe)
    assert [b.tolist() for b in batches] == [[1, 2, 4, 5], [7, 8, 10, 11], [13, 14, 16, 17], [19]]
    assert len(list(wd.from_range(10).batch(4, drop_last=True))) == 2
    records = [{"x": np.full(3, i), "y": i, "name": f"n{i}"} for i in range(5)]
    batch = next(iter(wd.from_iterable(records).batch(5)))
    assert batch["x"].shape == (5, 3) and batch["y"].tolist() == [0, 1, 2, 3, 4]
    assert batch["name"] == ["n0", "n1", "n2", "n3", "n4"]
    pairs = next(iter(wd.from_iterable([(np.zeros(2), 1), (np.ones(2), 0)]).batch(2)))
    assert isinstance(pairs, tuple) and pairs[0].shape == (2, 2) and pairs[1].tolist() == [1, 0]


def test_ragged_arrays_need_pad_collate() -> None:
    seqs = [np.arange(n) + 1 for n in (3, 1, 4)]
    with pytest.raises(ConfigError, match="pad_collate"):
        list(wd.from_iterable(seqs).batch(3))
    padded = next(iter(wd.from_iterable(seqs).batch(3, collate=wd.pad_collate(pad_value=0))))
    assert padded.tolist() == [[1, 2, 3, 0], [1, 0, 0, 0], [1, 2, 3, 4]]
    records = [{"ids": list(range(n)), "label": n} for n in (2, 3)]
    out = next(iter(wd.from_iterable(records).batch(2, collate=wd.pad_collate(pad_value=-1, lengths=True))))
    ids, lengths = out["ids"]
    assert ids.tolist() == [[0, 1, -1], [0, 1, 2]] and lengths.tolist() == [2, 3]
    assert out["label"].tolist() == [2, 3]


def test_namedtuples_batch_to_a_namedtuple_of_batches() -> None:
    items = [w.Pair(np.full(2, i), i) for i in range(3)]
    batch = wd.default_collate(items)
    assert type(batch) is w.Pair
    assert batch.x.shape == (3, 2) and batch.y.tolist() == [0, 1, 2]
    back = wd.uncollate(batch, 3)
    assert all(type(p) is w.Pair for p in back)
    assert [int(p.y) for p in back] == [0, 1, 2] and all(np.array_equal(p.x, np.full(2, i)) for i, p in enumerate(back))
    assert [int(p.y) for p in wd.from_iterable(items).batch(2).unbatch()] == [0, 1, 2]

    ragged = [w.Pair(np.arange(n) + 1, n) for n in (1, 3)]
    padded = wd.pad_collate(pad_value=-1)(ragged)
    assert type(padded) is w.Pair
    assert padded.x.tolist() == [[1, -1, -1], [1, 2, 3]] and padded.y.tolist() == [1, 3]
    with_lengths = wd.pad_collate(lengths=True)([w.Pair([1, 2], "a"), w.Pair([3], "b")])
    assert type(with_lengths) is w.Pair and with_lengths.y == ["a", "b"]
    values, lengths = with_lengths.x
    assert values.tolist() == [[1, 2], [3, 0]] and lengths.tolist() == [2, 1]
    nested = wd.pad_collate()([{"pair": w.Pair([1], 0)}, {"pair": w.Pair([2, 3], 1)}])
    assert type(nested["pair"]) is w.Pair and nested["pair"].x.tolist() == [[1, 0], [2, 3]]


def test_records_of_different_lengths_are_refused_with_advice() -> None:
    with pytest.raises(ConfigError, match="collate=list"):
        wd.default_collate([(1, 2), (3,)])


def test_unbatch_inverts_batch() -> None:
    records = [{"x": np.full(2, i), "i": i} for i in range(7)]
    back = list(wd.from_iterable(records).batch(3).unbatch())
    assert [r["i"] for r in back] == list(range(7))
    assert all(np.array_equal(r["x"], np.full(2, r["i"])) for r in back)
    assert list(wd.from_range(7).batch(3, collate=list).unbatch()) == list(range(7))
    with pytest.raises(ConfigError, match="cannot split"):
        list(wd.from_range(4).batch(2, collate=lambda xs: sum(xs)).unbatch())


def test_take_skip_and_prefetch() -> None:
    assert list(wd.from_range(10).take(3)) == [0, 1, 2]
    assert list(wd.from_range(10).skip(8)) == [8, 9]
    assert list(wd.from_range(10).skip(20)) == []
    assert list(wd.from_range(100).map(w.inc, workers=2, backend="thread").prefetch(3).take(5)) == [1, 2, 3, 4, 5]
    with pytest.raises(ConfigError, match="n must be"):
        wd.from_range(3).prefetch(0)


def test_prefetch_passes_errors_to_the_consumer() -> None:
    pipe = wd.from_range(20).map(w.fail_on_7, workers=0).prefetch(2)
    got = []
    with pytest.raises(ValueError, match="seven"):
        for x in pipe:
            got.append(x)
    assert got == list(range(7))


def test_next_run_of_a_source_and_of_a_serial_map() -> None:
    from weft.data._build import MapSpec
    from weft.data._map import MapNode
    from weft.data._sources import RandomAccessSource

    source = RandomAccessSource(list(range(5)).__getitem__, 5, name="five")
    source.restore(None)
    assert source.next_run(3) == ([0, 1, 2], [[0, 1, 2]])
    assert source.next_run(3) == ([3, 4], [[3, 4]]), "fewer only at the end"
    with pytest.raises(StopIteration):
        source.next_run(3)
    spec = MapSpec(fn=w.inc, workers=1, backend="serial", ordered=True, max_in_flight=None, on_error="raise",
                   retries=0, name="inc")
    source.restore(None)
    node = MapNode(source, spec)
    assert node.collated_batch == 0, "only build_chain says a batch follows"
    assert node.next_run(2) == ([0, 1], [[1], [2]]), "a serial map hands on one list per item"


def test_pipelines_are_immutable_and_reiterable() -> None:
    base = wd.from_range(5)
    doubled = base.map(w.double, workers=0)
    assert list(base) == [0, 1, 2, 3, 4]
    assert list(doubled) == [0, 2, 4, 6, 8]
    assert list(doubled) == [0, 2, 4, 6, 8]
    assert "map" in repr(doubled)


def test_map_sends_one_chunk_per_worker_until_one_is_measured() -> None:
    # Items 0 and 1 wait until the test has seen the stage pull what it pulls before any
    # result is in: two one-item probes (one per worker), not the whole in-flight bound.
    # (a thousand one-item messages before the first result is what a cluster engine paid)
    finished = 0
    pulled_before_any_result: list[int] = []
    gate = threading.Event()
    entered = threading.Barrier(3, timeout=120)  # a bound, never reached when it works

    def source():  # type: ignore[no-untyped-def]
        for i in range(200):
            if finished == 0:
                pulled_before_any_result.append(i)
            yield i

    def work(x: int) -> int:
        nonlocal finished
        if x < 2:
            entered.wait()
            gate.wait()
        finished += 1
        return x + 1

    pipe = wd.from_iterable(source()).map(work, workers=2, backend="thread")
    out: list[int] = []
    consumer = threading.Thread(target=lambda: out.extend(pipe))
    consumer.start()
    entered.wait()  # both probes run: the stage waits for one of them
    gate.set()
    consumer.join()
    assert out == list(range(1, 201))
    assert pulled_before_any_result == [0, 1]
