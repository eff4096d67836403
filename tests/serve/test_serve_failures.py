"""A model that fails: only the requests that make it fail get its error, every other
request batched with them gets its result, and the failures are counted."""

from __future__ import annotations

import asyncio
import threading

import httpx
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import serve_workloads as sw
from conftest import wait_until
from weft.errors import ModelError
from weft.serve import Batcher, BatcherConfig, Client, Server, ServerConfig


def _row(rid: int, bad: bool) -> dict[str, np.ndarray]:
    value = -float(rid) - 1 if bad else float(rid)
    return {"x": np.full((1, 2), value, np.float32)}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=24), st.integers(1, 3))
def test_a_failing_request_fails_alone(bad: list[bool], workers: int) -> None:
    model = sw.Picky()

    async def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return model.predict(inputs)

    async def main() -> tuple[list[dict[str, np.ndarray] | BaseException], Batcher]:
        # every request queued before the batcher runs: one full batch of all of them
        batcher = Batcher(run, BatcherConfig(max_batch_size=len(bad), max_delay=60.0, workers=workers))
        results = await asyncio.gather(*(batcher.infer(_row(i, b)) for i, b in enumerate(bad)),
                                       return_exceptions=True)
        return results, batcher

    results, batcher = asyncio.run(main())
    for rid, (is_bad, result) in enumerate(zip(bad, results, strict=True)):
        if is_bad:
            assert isinstance(result, ModelError)
            assert f"feature overflow in [{-rid - 1}.0]" in str(result), "its own error, nobody else's"
        else:
            assert isinstance(result, dict), result
            np.testing.assert_array_equal(result["y"], np.full((1, 2), rid + 1, np.float32))
    stats = batcher.statistics()
    assert stats.failed == sum(bad) and stats.completed == len(bad) - sum(bad)
    assert stats.batches == 1
    mixed = sum(bad) > 0 and len(bad) > 1
    assert (stats.split_batches > 0) == mixed
    assert stats.rerun_batches == len(model.batch_rows) - 1


def test_concurrent_clients_never_see_another_clients_error() -> None:
    """32 clients at once, 1 in 4 sending an input the model fails on, all queued behind a
    held batch so that the freed worker takes them as one mixed batch."""
    picky = sw.Picky()
    clients = 32
    config = ServerConfig(port=0, max_batch_size=clients, max_delay=0.0, workers=1, backend="thread")
    with Server([picky], config) as server:
        def hold() -> None:
            with Client(server.url) as client:
                client.infer("picky", {"x": np.full((1, 2), sw.Picky.HOLD, np.float32)})

        holder = threading.Thread(target=hold)
        holder.start()
        assert picky.held.wait(60)
        results: dict[int, object] = {}
        start = threading.Barrier(clients)

        def one(rid: int) -> None:
            start.wait()
            with Client(server.url) as client:
                try:
                    results[rid] = client.infer("picky", _row(rid, rid % 4 == 0))["y"]
                except ModelError as exc:
                    results[rid] = exc

        threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        assert wait_until(lambda: server.statistics().models["picky"].queued == clients, timeout=60)
        picky.release.set()
        for t in threads:
            t.join(60)
        holder.join(60)
        stats = server.statistics().models["picky"]
        metrics = httpx.get(f"{server.url}/metrics").text
    for rid in range(clients):
        result = results[rid]
        if rid % 4 == 0:
            assert isinstance(result, ModelError) and "HTTP 500" in str(result)
            assert f"feature overflow in [{-rid - 1}.0]" in str(result), "its own error, nobody else's"
        else:
            assert isinstance(result, np.ndarray), result
            np.testing.assert_array_equal(result, np.full((1, 2), rid + 1, np.float32))
    assert picky.batch_rows[1] == clients, "the queued requests ran as one batch"
    assert stats.failed == clients // 4 and stats.completed == 1 + clients - clients // 4
    assert stats.split_batches >= 1 and stats.rerun_batches >= 2
    assert f'weft_split_batches_total{{model="picky"}} {stats.split_batches}.0' in metrics
    assert f'weft_rerun_batches_total{{model="picky"}} {stats.rerun_batches}.0' in metrics
    assert 'weft_requests_total{model="picky",status="500"} 8.0' in metrics
