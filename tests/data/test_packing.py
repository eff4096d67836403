"""Chunks packed one array per field: batches exactly as the default collate makes them,
per-item results exactly as the function returned them, on threads and processes."""

from __future__ import annotations

import pickle
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from resume_runs import run_with_stops

import data_workloads as w
import weft.data as wd
from weft.data._collate import default_collate
from weft.data._packing import PackedRows, collate_runs
from weft.data._work import _packed, run_chunk
from weft.errors import ConfigError


def assert_same(got: Any, want: Any) -> None:
    """Equal values of the very same types, at every depth (arrays: dtype and shape too)."""
    assert type(got) is type(want), (type(got), type(want))
    if isinstance(want, np.ndarray):
        assert (got.dtype, got.shape) == (want.dtype, want.shape)
        np.testing.assert_array_equal(got, want)
    elif isinstance(want, dict):
        assert list(got) == list(want)
        for k in want:
            assert_same(got[k], want[k])
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want)
        for g, x in zip(got, want, strict=True):
            assert_same(g, x)
    else:
        assert got == want


def _item(kind: str, i: int) -> Any:
    """One result of the given kind: the shapes a map function returns."""
    if kind == "array":
        return np.full((2, 3), i, dtype=np.float32)
    if kind == "array-0d":
        return np.array(i)
    if kind == "object-array":
        return np.array([i, "x"], dtype=object)
    if kind == "dtype-mix":
        return np.full(2, i, dtype=np.int32 if i % 3 else np.int64)
    if kind == "ragged":
        return w.ragged_row(i)
    if kind == "dict":
        return w.record(i)
    if kind == "tuple":
        return w.image_label(i)
    if kind == "nested":
        return w.nested_record(i)
    if kind == "namedtuple":
        return w.Pair(np.full(3, i, dtype=np.int8), i * 1.5)
    if kind == "list-record":
        return [np.full(2, i, dtype=np.float64), i, f"s{i}"]
    if kind == "numbers":
        return i if i % 3 else float(i)
    if kind == "big-ints":
        return 2**70 + i
    if kind == "strings":
        return f"s{i}"
    if kind == "ordered-dict":
        return OrderedDict(image=np.full(2, i, dtype=np.int32), label=i)
    if kind == "mixed-dtype-record":
        return w.mixed_dtype_record(i)
    if kind == "ragged-record":
        return w.ragged_record(i)
    if kind == "keys-change":  # a second key appears at item 9: the first item's keys rule
        return {"a": np.full(2, i, dtype=np.int32)} if i < 9 else {"a": np.full(2, i, dtype=np.int32), "b": i}
    if kind == "shape-change":  # rows grow at item 9
        return {"a": np.full(2 if i < 9 else 3, i, dtype=np.int32), "b": i}
    raise AssertionError(kind)


KINDS = ["array", "array-0d", "object-array", "dtype-mix", "ragged", "dict", "tuple", "nested", "namedtuple",
         "list-record", "numbers", "big-ints", "strings", "ordered-dict", "mixed-dtype-record", "ragged-record",
         "keys-change", "shape-change"]


def _default_or_error(items: list[Any]) -> tuple[Any, str | None]:
    try:
        return default_collate(items), None
    except ConfigError as exc:
        return None, str(exc)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(kind=st.sampled_from(KINDS), n=st.integers(1, 40), chunks=st.lists(st.integers(1, 13), min_size=1),
       batch=st.integers(1, 17), remote=st.booleans())
def test_batches_of_packed_chunks_are_exactly_the_default_collate(kind: str, n: int, chunks: list[int], batch: int,
                                                                  remote: bool) -> None:
    items = [_item(kind, i) for i in range(n)]
    # the chunks a map's workers would return: packed as in a worker process (and pickled
    # there and back) or as in a worker thread whose results a default-collate batch consumes
    packed: list[tuple[int, Any]] = []
    start, sizes = 0, iter(chunks * (n // len(chunks) + 1))
    while start < n:
        stop = min(n, start + next(sizes))
        results = run_chunk(items.__getitem__, range(start, stop), 0, remote, not remote).results
        if remote:
            results = pickle.loads(pickle.dumps(results))
        packed.append((start, results))
        start = stop
    for begin, results in packed:  # per item: the function's results
        for offset, value in enumerate(results):
            assert_same(value, items[begin + offset])
    for a in range(0, n, batch):  # per batch: the pieces MapNode.next_run hands on
        b = min(n, a + batch)
        pieces = [results[max(a, s) - s:min(b, s + len(results)) - s] for s, results in packed
                  if s < b and s + len(results) > a]
        want, error = _default_or_error(items[a:b])
        if error is not None:
            with pytest.raises(ConfigError) as caught:
                collate_runs(pieces)
            assert str(caught.value) == error
        else:
            assert_same(collate_runs(pieces), want)


def test_what_packs_and_what_stays_a_list() -> None:
    records = [w.record(i) for i in range(4)]
    packed = _packed(records)
    assert isinstance(packed, PackedRows)
    image, label, name, weight = packed.columns
    assert isinstance(image, np.ndarray) and image.shape == (4, 3, 4)
    assert (label, name, weight) == ([0, 1, 2, 3], ["item0", "item1", "item2", "item3"], [0.0, 0.5, 1.0, 1.5]), \
        "numbers and strings stay the values the function returned"
    assert isinstance(_packed([w.row_of(i) for i in range(3)]), np.ndarray), "bare arrays: one array"
    ragged = _packed([w.ragged_record(i) for i in range(3)])
    assert isinstance(ragged, PackedRows) and isinstance(ragged.columns[1], np.ndarray)
    assert [len(t) for t in ragged.columns[0]] == [1, 2, 3], "a ragged field stays the list of its values"
    for unpacked in ([w.inc(i) for i in range(3)], [f"s{i}" for i in range(3)],
                     [OrderedDict(a=np.zeros(2)) for _ in range(3)], [np.array(i) for i in range(3)],
                     [w.record(0), w.image_label(1)], [w.record(0)]):
        assert _packed(unpacked) is unpacked


def test_build_tells_a_map_when_a_default_collate_batch_follows() -> None:
    from weft.data._build import build_chain
    from weft.data._map import MapNode

    def collated(pipe: wd.Pipeline) -> int:
        nodes = build_chain(pipe._specs).chain()
        try:
            return next(n.collated_batch for n in nodes if isinstance(n, MapNode))
        finally:
            nodes[-1].close()

    base = wd.from_range(10).map(w.record, workers=2, backend="thread")
    assert collated(base.batch(8)) == 8
    assert collated(base.batch(8, collate=wd.default_collate)) == 8
    assert collated(base.batch(8, collate=list)) == 0, "a custom collate gets the items as they are"
    assert collated(base) == 0
    assert collated(base.prefetch(2).batch(8)) == 0, "only a batch stage directly after the map"
    assert collated(base.filter(w.not_div3).batch(8)) == 0


def _reference(fn: Any, n: int, size: int, drop_last: bool = False) -> list[Any]:
    items = [fn(i) for i in range(n)]
    out = [default_collate(items[a:a + size]) for a in range(0, n, size)]
    return [b for b, a in zip(out, range(0, n, size), strict=True) if not drop_last or a + size <= n]


PIPELINE_FNS = [w.record, w.image_label, w.nested_record, w.mixed_dtype_record, w.row_of, w.inc]


@pytest.mark.parametrize("fn", PIPELINE_FNS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(("size", "drop_last"), [(1, False), (7, False), (16, True), (100, False)])
def test_thread_map_batches_equal_the_default_collate(fn: Any, size: int, drop_last: bool) -> None:
    n = 150
    got = list(wd.from_range(n).map(fn, workers=2, backend="thread").batch(size, drop_last=drop_last))
    want = _reference(fn, n, size, drop_last)
    assert len(got) == len(want)
    for g, x in zip(got, want, strict=True):
        assert_same(g, x)


@pytest.mark.parametrize("fn", [w.record, w.nested_record, w.mixed_dtype_record], ids=lambda f: f.__name__)
def test_process_map_batches_equal_the_default_collate(fn: Any) -> None:
    n = 90
    for size in (4, 13):
        got = list(wd.from_range(n).map(fn, workers=2, backend="process").batch(size))
        want = _reference(fn, n, size)
        assert len(got) == len(want)
        for g, x in zip(got, want, strict=True):
            assert_same(g, x)


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_ragged_fields_fail_as_the_default_collate_does(backend: str) -> None:
    with pytest.raises(ConfigError, match="pad_collate"):
        list(wd.from_range(30).map(w.ragged_record, workers=2, backend=backend).batch(8))


def test_thread_batches_are_slices_of_the_chunks_workers_stacked() -> None:
    # chunks hold whole batches, so each batch is a view of one chunk's stacked field
    batches = list(wd.from_range(200).map(w.record, workers=2, backend="thread").batch(8))
    assert len(batches) == 25
    for b in batches:
        assert b["image"].base is not None and not b["image"].flags.owndata, "a slice, not a copy"
    assert [int(x) for b in batches for x in b["label"]] == [i % 10 for i in range(200)]


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_items_are_unchanged_when_no_batch_follows(backend: str) -> None:
    items = list(wd.from_range(60).map(w.record, workers=2, backend=backend))
    for i, item in enumerate(items):
        assert_same(item, w.record(i))  # a label stays an int, a weight a float, in a plain dict
    listed = list(wd.from_range(20).map(w.record, workers=2, backend=backend).batch(8, collate=list))
    assert [item["label"] for b in listed for item in b] == [i % 10 for i in range(20)]
    assert all(type(item["label"]) is int for b in listed for item in b)


@pytest.mark.parametrize("backend", ["thread", "process"])
@pytest.mark.parametrize("ordered", [True, False])
def test_resume_mid_epoch_gives_the_same_batches(backend: str, ordered: bool) -> None:
    def labels(batches: list[Any]) -> list[int]:
        return [int(x) for b in batches for x in b["image"][:, 0, 0]]

    def make() -> wd.Pipeline:
        return wd.from_range(120).map(w.record, workers=2, backend=backend, ordered=ordered).batch(8)

    batches = run_with_stops(make, [4])
    seen = labels(batches)
    assert sorted(seen) == list(range(120)) and len(seen) == 120
    if ordered:
        want = _reference(w.record, 120, 8)
        for g, x in zip(batches, want, strict=True):
            assert_same(g, x)


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_skip_inside_a_packed_chunk_drops_exactly_the_failing_items(backend: str) -> None:
    pipe = wd.from_range(100).map(w.record_failing_on_7s, workers=2, backend=backend, on_error="skip").batch(8)
    got = list(pipe)
    kept = [i for i in range(100) if i % 10 != 7]
    want = [default_collate([w.record(i) for i in kept[a:a + 8]]) for a in range(0, len(kept), 8)]
    assert len(got) == len(want)
    for g, x in zip(got, want, strict=True):
        assert_same(g, x)
    assert pipe.statistics().stages[1].skipped == 10


def test_the_items_auto_measured_are_stacked_by_a_worker_when_a_batch_follows(monkeypatch: pytest.MonkeyPatch,
                                                                               no_leaks: None) -> None:
    """auto's measured items are the stage's first chunk: a worker thread stacks them, as it
    stacks every later chunk, rather than the consumer; the batches are unchanged."""
    import threading

    from weft.data import _map, _map_backend
    from weft.data._work import ChunkResult
    from weft.exec._policy import BackendChoice

    def measured_eight(fn: Any, *, workers: int, retries: int, pull: Any) -> _map_backend.Choice:
        pulled, results = [], []
        for _ in range(8):
            key, value, post, ordinal = pull()
            pulled.append((key, post, ordinal))
            results.append(fn(value))
        return _map_backend.Choice(decision=BackendChoice(backend="thread", reason="measured by the test"),
                                   measured=True, pulled=tuple(pulled), first_chunk=ChunkResult(results, None, 0, 0.01))

    packed_on: list[str] = []
    real_pack_chunk = _map.pack_chunk

    def pack_chunk(chunk: ChunkResult) -> ChunkResult:
        packed_on.append(threading.current_thread().name)
        return real_pack_chunk(chunk)

    monkeypatch.setattr(_map_backend, "choose", measured_eight)
    monkeypatch.setattr(_map, "pack_chunk", pack_chunk)
    pipe = wd.from_range(40).map(w.row_of, workers=2, backend="auto").batch(4)
    got = list(pipe)
    want = [default_collate([w.row_of(i) for i in range(a, a + 4)]) for a in range(0, 40, 4)]
    assert len(got) == len(want)
    for g, x in zip(got, want, strict=True):
        assert_same(g, x)
    assert len(packed_on) == 1 and packed_on[0] != threading.main_thread().name
    assert got[0].base is not None, "the first batch is a slice of the worker's stacked chunk"
