"""Runs of items pulled at once (``Node.pull_run``): what a map stage fills its chunks with.

A run must be exactly what ``next()`` and ``state()`` per item would have given, the
state after every item included, since a resume can stop after any item of it; and an
error in the middle of a run must leave the source where ``next()`` would have left it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import weft.data as wd
from weft.data._node import CountStates, Node, NodeState
from weft.data._sources import IterableSource, RandomAccessSource, ShardOrder, ShuffleOrder
from weft.data._stages import Filter


def _one_by_one(node: Node) -> list[tuple[Any, Any, Any]]:
    out: list[tuple[Any, Any, Any]] = []
    while True:
        try:
            key, value = node.next()
        except StopIteration:
            return out
        out.append((key, value, node.state()))


def _in_runs(node: Node, n: int) -> list[tuple[Any, Any, Any]]:
    out: list[tuple[Any, Any, Any]] = []
    while True:
        try:
            keys, values, states = node.pull_run(n)
        except StopIteration:
            return out
        assert len(keys) == len(values) == len(states)
        assert 0 < len(keys) <= n
        out.extend((k, v, states[i]) for i, (k, v) in enumerate(zip(keys, values, strict=True)))
        if len(keys) < n:  # fewer than asked only at the end
            with pytest.raises(StopIteration):
                node.pull_run(n)
            return out


def _random_access(transforms: tuple[Any, ...] = ()) -> RandomAccessSource:
    return RandomAccessSource(lambda i: i * 10, 23, name="r", transforms=transforms)


SOURCES: dict[str, Callable[[], Node]] = {
    "random access": _random_access,
    "random access, sharded and shuffled": lambda: _random_access((ShardOrder(1, 2), ShuffleOrder(3))),
    "iterable": lambda: IterableSource(list(range(100, 123)), name="i"),
    "generator": lambda: IterableSource((x for x in range(17)), name="g"),
    "filter (the default run)": lambda: Filter(_random_access(), lambda v: v % 20 == 0),
}


@pytest.mark.parametrize("make", SOURCES.values(), ids=SOURCES.keys())
@pytest.mark.parametrize("n", [1, 5, 23, 64])
def test_a_run_is_next_and_state_item_by_item(make: Callable[[], Node], n: int) -> None:
    expected = _one_by_one(make())
    assert expected, "the source yields something"
    node = make()
    assert _in_runs(node, n) == expected
    assert node.items == len(expected)


def test_runs_and_single_items_interleave() -> None:
    node = _random_access()
    keys, _, states = node.pull_run(4)
    assert keys == [0, 1, 2, 3] and states[-1] == node.state() == NodeState(4, None)
    assert node.next() == (4, 40)
    keys, _, states = node.pull_run(2)
    assert keys == [5, 6] and list(states) == [NodeState(6, None), NodeState(7, None)]


def test_a_failing_read_mid_run_stays_the_next_item() -> None:
    fail = {7}

    def get(i: int) -> int:
        if i in fail:
            fail.discard(i)
            raise OSError(f"cannot read {i}")
        return i

    node = RandomAccessSource(get, 12, name="r")
    with pytest.raises(OSError, match="cannot read 7"):
        node.pull_run(10)
    assert node.state() == NodeState(7, None), "the seven items before it were read"
    assert node.next() == (7, 7), "the failed item is read again, as next() would"


def test_an_iterator_failing_mid_run_counts_what_it_gave() -> None:
    class Flaky:
        def __init__(self) -> None:
            self.i = 0

        def __iter__(self) -> Iterator[int]:
            return self

        def __next__(self) -> int:
            self.i += 1
            if self.i == 4:
                raise OSError("connection reset")
            return self.i

    node = IterableSource(Flaky(), name="f")
    with pytest.raises(OSError, match="connection reset"):
        node.pull_run(10)
    assert node.state() == NodeState(3, None), "three items came before the error"
    keys, values, _ = node.pull_run(2)
    assert (keys, values) == ([3, 4], [5, 6])


def test_count_states_index_like_a_list() -> None:
    states = CountStates(10, 3)
    as_list = [NodeState(11, None), NodeState(12, None), NodeState(13, None)]
    assert list(states) == as_list
    assert states[-1] == as_list[-1] and states[1:] == as_list[1:]
    with pytest.raises(IndexError):
        states[3]


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_a_map_resumes_exactly_from_any_item_of_a_run(backend: str) -> None:
    """Chunks are filled by runs; a state taken after any batch resumes at the next item."""
    def pipe() -> wd.Pipeline:
        return wd.from_iterable(list(range(50))).map(_double, workers=2, backend=backend).batch(3)

    full = [list(b) for b in pipe()]
    for stop in (1, 7, 16):
        p = pipe()
        it = iter(p)
        head = [list(next(it)) for _ in range(stop)]
        state = p.state_dict()
        del it
        resumed = pipe()
        resumed.load_state_dict(state)
        assert head + [list(b) for b in resumed] == full


def _double(x: int) -> int:
    return 2 * x
