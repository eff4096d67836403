"""The batcher: exact batch formation and split-back, overload, deadlines, cancellation."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from weft.errors import ConfigError
from weft.serve import Batcher, BatcherConfig
from weft.serve._batcher import Expired, Overloaded, batch_key


def _request(rid: int, rows: int, width: int, dtype: str) -> dict[str, np.ndarray]:
    # every row carries its request id and row number, so a mix-up is visible in the result
    x = np.empty((rows, width), dtype=dtype)
    for r in range(rows):
        x[r] = rid * 100 + r
    return {"x": x}


class Recorder:
    """A fake model: records each batch and answers f(x) = 3x + 1, with a row-count output."""

    def __init__(self, workers: int) -> None:
        self.batches: list[dict[str, np.ndarray]] = []
        self.running = 0
        self.max_running = 0
        self.workers = workers

    async def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.batches.append(inputs)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        for _ in range(random.randint(0, 3)):
            await asyncio.sleep(0)
        self.running -= 1
        x = inputs["x"]
        return {"y": x * 3 + 1, "n": np.full(x.shape[0], x.shape[0])}


requests = st.lists(st.tuples(st.integers(1, 5), st.sampled_from([2, 3]), st.sampled_from(["<f4", "<i4"])),
                    min_size=1, max_size=40)


@settings(max_examples=120, deadline=None)
@given(requests, st.integers(1, 8), st.integers(1, 3), st.sampled_from([0.0, 0.0005, 0.002]), st.randoms())
def test_batches_are_homogeneous_bounded_and_split_back_exactly(
        specs: list[tuple[int, int, str]], max_rows: int, workers: int, delay: float, rnd: random.Random) -> None:
    specs = [(min(rows, max_rows), width, dtype) for rows, width, dtype in specs]
    model = Recorder(workers)

    async def main() -> list[dict[str, np.ndarray]]:
        batcher = Batcher(model, BatcherConfig(max_batch_size=max_rows, max_delay=delay, queue_size=1000,
                                               workers=workers))

        async def client(rid: int) -> dict[str, np.ndarray]:
            for _ in range(rnd.randint(0, 4)):  # random arrival order
                await asyncio.sleep(0)
            return await batcher.infer(_request(rid, *specs[rid]))

        results = await asyncio.gather(*(client(i) for i in range(len(specs))))
        stats = batcher.statistics()
        assert stats.submitted == stats.completed == len(specs)
        assert stats.queued == 0 and stats.running_batches == 0
        assert stats.rows == sum(rows for rows, _, _ in specs) and stats.batches == len(model.batches)
        return results

    results = asyncio.run(main())
    for rid, (rows, width, dtype) in enumerate(specs):
        x = _request(rid, rows, width, dtype)["x"]
        np.testing.assert_array_equal(results[rid]["y"], x * 3 + 1)  # this request's rows, in order
        assert results[rid]["y"].dtype == np.dtype(dtype)
        assert results[rid]["n"].shape == (rows,)
    seen = []
    for batch in model.batches:
        x = batch["x"]
        assert x.shape[0] <= max_rows
        ids = sorted({int(v) // 100 for v in x[:, 0]})
        keys = {batch_key(_request(i, *specs[i])) for i in ids}
        assert len(keys) == 1, "requests with different shapes or dtypes were mixed"
        assert sum(specs[i][0] for i in ids) == x.shape[0]
        seen += ids
    assert sorted(seen) == list(range(len(specs))), "every request is computed exactly once"
    assert model.max_running <= workers


def test_a_freed_worker_takes_everything_queued_at_once() -> None:
    async def main() -> list[int]:
        release = asyncio.Event()
        sizes: list[int] = []

        async def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            sizes.append(inputs["x"].shape[0])
            if len(sizes) == 1:
                await release.wait()
            return {"y": inputs["x"]}

        # a long max_delay: only "full" or "a worker freed up" can start the second batch
        batcher = Batcher(run, BatcherConfig(max_batch_size=10, max_delay=60.0, workers=1))
        first = asyncio.ensure_future(batcher.infer({"x": np.zeros((10, 1))}))
        await asyncio.sleep(0)
        others = [asyncio.ensure_future(batcher.infer({"x": np.ones((1, 1))})) for _ in range(4)]
        for _ in range(3):
            await asyncio.sleep(0)
        assert batcher.statistics().queued == 4
        release.set()
        await asyncio.gather(first, *others)
        return sizes

    assert asyncio.run(main()) == [10, 4]


class ManualClock:
    """A clock that moves only when the test says: batching decisions then do not depend
    on how fast this machine runs the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_max_delay_is_timed_from_the_oldest_request() -> None:
    async def main() -> list[int]:
        sizes: list[int] = []

        async def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            sizes.append(inputs["x"].shape[0])
            return {"y": inputs["x"]}

        clock = ManualClock()
        batcher = Batcher(run, BatcherConfig(max_batch_size=100, max_delay=0.05, workers=1), clock=clock)
        first = asyncio.ensure_future(batcher.infer({"x": np.zeros((1, 1))}))
        await asyncio.sleep(0)
        clock.now = 0.01
        second = asyncio.ensure_future(batcher.infer({"x": np.zeros((2, 1))}))
        await asyncio.sleep(0)
        clock.now = 0.0499  # 49.9 ms after the oldest, 39.9 ms after the newest: not yet
        batcher.wake()
        await asyncio.sleep(0)
        assert sizes == [] and batcher.statistics().queued == 2
        clock.now = 0.05  # 50 ms after the oldest: both go, as one batch
        batcher.wake()
        await asyncio.gather(first, second)
        return sizes

    assert asyncio.run(main()) == [3], "both requests wait for the same batch, timed from the oldest"


def test_the_loop_timer_starts_a_due_batch_by_itself() -> None:
    """Without wake(): the batcher's own timer starts the batch once max_delay has passed."""
    async def main() -> list[int]:
        sizes: list[int] = []

        async def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            sizes.append(inputs["x"].shape[0])
            return {"y": inputs["x"]}

        loop = asyncio.get_running_loop()
        batcher = Batcher(run, BatcherConfig(max_batch_size=100, max_delay=0.01, workers=1))
        start = loop.time()
        await asyncio.gather(batcher.infer({"x": np.zeros((1, 1))}), batcher.infer({"x": np.zeros((2, 1))}))
        # A lower bound only, so it holds however busy the machine: the batcher checks the
        # delay on this same clock before it starts a batch.
        assert loop.time() - start >= 0.01
        return sizes

    assert asyncio.run(main()) == [3]


def test_full_queue_rejects_at_once_and_closed_batcher_refuses() -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            await release.wait()
            return {"y": inputs["x"]}

        # queue_size counts the requests held: 1 computing + 2 waiting fill it.
        batcher = Batcher(run, BatcherConfig(max_batch_size=1, max_delay=0, queue_size=3, workers=1))
        assert batcher.refusal() is None
        accepted = [asyncio.ensure_future(batcher.infer({"x": np.zeros((1, 1))})) for _ in range(3)]
        await asyncio.sleep(0)
        stats = batcher.statistics()
        assert (stats.running, stats.running_batches, stats.queued) == (1, 1, 2)
        with pytest.raises(Overloaded, match="queue is full"):
            await batcher.infer({"x": np.zeros((1, 1))})
        assert batcher.statistics().rejected == 1
        reason = batcher.refusal()  # the non-raising check the HTTP layer uses
        assert reason is not None and "queue is full" in reason and batcher.statistics().rejected == 2
        release.set()
        drained = asyncio.ensure_future(batcher.drain())
        await asyncio.sleep(0)
        assert batcher.closed
        with pytest.raises(Overloaded, match="shutting down"):
            await batcher.infer({"x": np.zeros((1, 1))})
        await drained
        assert all(t.done() and t.exception() is None for t in accepted)

    asyncio.run(main())


def test_expired_requests_are_dropped_before_compute() -> None:
    async def main() -> None:
        release = asyncio.Event()
        seen: list[float] = []

        async def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            seen.extend(inputs["x"][:, 0].tolist())
            await release.wait()
            return {"y": inputs["x"]}

        loop = asyncio.get_running_loop()
        batcher = Batcher(run, BatcherConfig(max_batch_size=1, max_delay=0, workers=1))
        blocker = asyncio.ensure_future(batcher.infer({"x": np.full((1, 1), 1.0)}))
        await asyncio.sleep(0)
        with pytest.raises(Expired):
            await batcher.infer({"x": np.full((1, 1), 2.0)}, deadline=loop.time() + 0.05)
        stats = batcher.statistics()
        assert stats.expired == 1 and stats.queued == 0
        release.set()
        await blocker
        assert seen == [1.0], "the expired request never reached the model"

    asyncio.run(main())


def test_a_cancelled_request_leaves_the_queue() -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            await release.wait()
            return {"y": inputs["x"]}

        batcher = Batcher(run, BatcherConfig(max_batch_size=1, max_delay=0, workers=1))
        blocker = asyncio.ensure_future(batcher.infer({"x": np.zeros((1, 1))}))
        waiting = asyncio.ensure_future(batcher.infer({"x": np.zeros((1, 1))}))
        await asyncio.sleep(0)
        assert batcher.statistics().queued == 1
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        stats = batcher.statistics()
        assert stats.queued == 0 and stats.cancelled == 1
        release.set()
        await blocker
        assert batcher.statistics().batches == 1

    asyncio.run(main())


def test_model_failures_and_wrong_row_counts_fail_the_batch() -> None:
    async def main() -> None:
        async def wrong_rows(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {"y": inputs["x"][:1]}

        batcher = Batcher(wrong_rows, BatcherConfig(max_delay=0))
        with pytest.raises(Exception, match="rows"):
            await batcher.infer({"x": np.zeros((3, 1))})
        assert batcher.statistics().failed == 1

    asyncio.run(main())


def test_bad_requests_and_config() -> None:
    async def main() -> None:
        async def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return inputs

        batcher = Batcher(run, BatcherConfig(max_batch_size=4))
        with pytest.raises(ConfigError, match="max_batch_size"):
            await batcher.infer({"x": np.zeros((5, 1))})
        with pytest.raises(ConfigError, match="batch dimension"):
            await batcher.infer({"x": np.zeros((2, 1)), "z": np.zeros((3, 1))})

    asyncio.run(main())
    for bad in ({"max_batch_size": 0}, {"workers": 0}, {"queue_size": -1}, {"max_delay": -1}):
        with pytest.raises(ConfigError):
            BatcherConfig(**bad)  # type: ignore[arg-type]
