"""How many items a map stage keeps in flight by default: fewer when its results are large
(a bound in bytes, measured on the results), never fewer than its workers need, and
exactly what the user sets when they set it."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import weft.data as wd
from weft.data import _chunks
from weft.data._chunks import bytes_bounded_in_flight, result_bytes
from weft.data._packing import pack


def test_the_bound_in_bytes_lowers_the_item_bound_for_large_results_only() -> None:
    mb = 1 << 20
    assert bytes_bounded_in_flight(64, 4 * mb, workers=2) == 16
    assert bytes_bounded_in_flight(64, 256 * 1024, workers=2) == 64, "256 KB results: 64 fit in 64 MB"
    assert bytes_bounded_in_flight(64, 48 * mb, workers=2) == 4, "never below two items per worker"
    assert bytes_bounded_in_flight(256, 0.0, workers=2) == 256, "unmeasured: the item bound as it is"


def test_result_bytes_counts_the_arrays_of_every_shape_of_chunk() -> None:
    rows = [np.zeros(1000, np.float32) for _ in range(3)]
    assert result_bytes(rows) == 12_000
    assert result_bytes(np.stack(rows)) == 12_000
    records = [{"x": np.zeros(10, np.float64), "label": i} for i in range(4)]
    packed = pack(records, np.stack)
    assert packed is not None and result_bytes(packed) == 320, "only the stacked arrays count"
    assert result_bytes([1, 2, 3]) == 0
    assert result_bytes([None, np.zeros(4)]) == 0, "a chunk led by a failed item says nothing"


class _Pulls:
    """A source that counts the items pulled from it."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.pulled = 0

    def __iter__(self) -> Iterator[int]:
        for i in range(self.n):
            self.pulled += 1
            yield i


def _kilobytes_64(i: int) -> np.ndarray:
    return np.full(16 * 1024, i, np.float32)  # 64 KB


def _small(i: int) -> np.ndarray:
    return np.full(4, i, np.float32)


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_large_results_keep_fewer_items_in_flight(backend: str, monkeypatch: pytest.MonkeyPatch,
                                                  no_leaks: None) -> None:
    # a 1 MB budget makes 64 KB results "large" (16 of them), without moving gigabytes
    monkeypatch.setattr(_chunks, "IN_FLIGHT_RESULT_BYTES", 1 << 20)
    source = _Pulls(400)
    pipe = wd.from_iterable(source).map(_kilobytes_64, workers=2, backend=backend)
    ahead = []
    for handed, value in enumerate(pipe, start=1):
        assert value[0] == handed - 1
        ahead.append(source.pulled - handed)
    stage = pipe.statistics().stages[1]
    assert stage.extra["max in flight"] == 16.0
    chunk = int(stage.extra["chunk"])
    # items pulled and not handed on: the bound, plus the rest of the chunk being handed on
    # (and the first chunks, sent before any result was measured, are one item per worker)
    assert max(ahead[20:]) <= 16 + chunk


def test_small_results_keep_the_item_bound(no_leaks: None) -> None:
    pipe = wd.from_range(300).map(_small, workers=2, backend="thread")
    assert sum(1 for _ in pipe) == 300
    assert pipe.statistics().stages[1].extra["max in flight"] == 64.0


def test_a_bound_the_user_set_is_kept_whatever_the_results(monkeypatch: pytest.MonkeyPatch,
                                                           no_leaks: None) -> None:
    monkeypatch.setattr(_chunks, "IN_FLIGHT_RESULT_BYTES", 1 << 20)
    pipe = wd.from_range(300).map(_kilobytes_64, workers=2, backend="thread", max_in_flight=40)
    assert sum(1 for _ in pipe) == 300
    assert pipe.statistics().stages[1].extra["max in flight"] == 40.0


def test_whole_batch_chunks_keep_their_room(monkeypatch: pytest.MonkeyPatch, no_leaks: None) -> None:
    """A default-collate batch after the map: the bound leaves room for a batch per chunk,
    two per worker, however large the results."""
    monkeypatch.setattr(_chunks, "IN_FLIGHT_RESULT_BYTES", 1 << 20)
    pipe = wd.from_range(320).map(_kilobytes_64, workers=2, backend="thread").batch(16)
    batches = list(pipe)
    assert len(batches) == 20 and batches[-1].shape == (16, 16 * 1024)
    assert pipe.statistics().stages[1].extra["max in flight"] == 64.0  # 2 x 2 workers x 16
