"""The thread handoffs that park without threading.Condition (weft.exec._handoff)."""

from __future__ import annotations

import gc
import queue
import threading
import weakref
from concurrent.futures import Future

import pytest

from weft.exec._handoff import Channel, Completions


def test_channel_is_bounded_and_gives_slots_back() -> None:
    channel = Channel(2)
    channel.put_nowait("a")
    channel.put("b")
    with pytest.raises(queue.Full):
        channel.put_nowait("c")
    assert channel.qsize() == 2
    assert channel.get_nowait() == "a"
    channel.put_nowait("c")  # the slot "a" held is free again
    assert [channel.get(timeout=1), channel.get(timeout=1)] == ["b", "c"]
    with pytest.raises(queue.Empty):
        channel.get(timeout=0.01)
    with pytest.raises(queue.Empty):
        channel.get_nowait()


def test_a_full_channel_blocks_the_writer_until_a_read() -> None:
    channel = Channel(1)
    channel.put("first")
    wrote = threading.Event()

    def writer() -> None:
        channel.put("second")
        wrote.set()

    thread = threading.Thread(target=writer)
    thread.start()
    assert not wrote.wait(0.05), "a put into a full channel returned"
    assert channel.get() == "first"
    thread.join(timeout=60)
    assert wrote.is_set() and channel.get_nowait() == "second"


def test_completions_come_in_the_order_futures_finish() -> None:
    completions: Completions[str] = Completions()
    a: Future[int] = Future()
    b: Future[int] = Future()
    done: Future[int] = Future()
    done.set_result(0)
    completions.watch(a, "a")
    completions.watch(b, "b")
    completions.watch(done, "done")  # already done: reported at once
    assert completions.next() == "done"
    b.set_result(2)
    assert completions.next() == "b"
    assert a.cancel()  # a cancelled future is finished too
    assert completions.next() == "a"


def test_waiting_for_one_future_skips_the_reports_of_others() -> None:
    completions: Completions[int] = Completions()
    futures: list[Future[int]] = [Future() for _ in range(3)]
    for i, future in enumerate(futures):
        completions.watch(future, i)
    released = threading.Event()

    def finish_newest_first() -> None:
        futures[2].set_result(2)
        futures[1].set_result(1)
        released.wait()
        futures[0].set_result(0)

    thread = threading.Thread(target=finish_newest_first)
    thread.start()
    completions.wait_for(futures[2])
    assert futures[2].done()
    released.set()
    completions.wait_for(futures[0])  # blocks through the report of futures[1] until its own
    assert futures[0].result() == 0
    thread.join(timeout=60)  # every report is in
    completions.wait_for(futures[1])  # done long ago: returns, dropping what was left
    with pytest.raises(queue.Empty):
        completions._finished.get_nowait()


class _Result:
    """A result a weak reference can watch (a stand-in for a large array)."""


class _Tag:
    """A tag that refers to its future, as a map stage's chunk does."""

    def __init__(self, future: Future[_Result]) -> None:
        self.future = future


@pytest.mark.parametrize("ordered", [False, True])
def test_a_taken_result_is_freed_without_the_cyclic_collector(ordered: bool) -> None:
    """A future keeps its done-callbacks after they ran: a callback holding a tag that
    refers back to the future would keep the result alive until gc runs."""
    gc.disable()  # only reference counting may free it
    try:
        completions: Completions[_Tag] = Completions()
        future: Future[_Result] = Future()
        completions.watch(future, _Tag(future))
        result = _Result()
        alive = weakref.ref(result)
        future.set_result(result)
        del result
        if ordered:
            completions.wait_for(future)
            tag = None
        else:
            tag = completions.next()
        assert future.result() is alive()
        del future, tag
        assert alive() is None
    finally:
        gc.enable()
