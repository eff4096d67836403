"""Failures: only the requests a model fails on get its error (every other request batched
with them gets its result, and the failures are counted); outputs that break the declared
spec answer 500; tracebacks reach the log, never clients; a port in use is said first."""

from __future__ import annotations

import asyncio
import logging
import pickle
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from serve_subprocess import STARTUP_TIMEOUT, SUBPROCESS_TEST_TIMEOUT

import serve_workloads as sw
from conftest import wait_until
from weft.errors import ModelError, ServeError
from weft.serve import Batcher, BatcherConfig, Client, Server, ServerConfig
from weft.serve._failures import FailureLog, details, user_error


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


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int = logging.WARNING) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@pytest.fixture
def weft_log() -> Iterator[_Records]:
    records = _Records()
    logger = logging.getLogger("weft")
    logger.addHandler(records)
    try:
        yield records
    finally:
        logger.removeHandler(records)


def test_outputs_that_break_the_declared_spec_answer_500(weft_log: _Records) -> None:
    config = ServerConfig(port=0, max_batch_size=1, max_delay=0, backend="thread")
    with Server([sw.Misdeclared()], config) as server, Client(server.url) as client:
        def call(mode: int) -> np.ndarray:
            return client.infer("misdeclared", {"x": np.full((1, 2), mode, np.float32)})["y"]

        np.testing.assert_array_equal(call(0), np.zeros((1, 2), np.float32))
        expected = {1: "'y' has shape [1, 3] for this request, declared [-1, 2]",
                    2: "'y' is FP64, declared FP32", 3: "['z'] not declared", 4: "['y'] missing"}
        for mode, problem in expected.items():
            with pytest.raises(ModelError, match="HTTP 500") as caught:
                call(mode)
            assert "break its declared outputs" in str(caught.value) and problem in str(caught.value)
        assert call(0).shape == (1, 2), "the model keeps serving"
    logged = [m for m in weft_log.messages() if "break its declared outputs" in m]
    assert len(logged) == 1 and "outputs = [TensorSpec(...)]" in logged[0], "logged once per model, with the fix"


def test_a_failing_predict_logs_its_traceback_never_sent_to_clients(weft_log: _Records) -> None:
    config = ServerConfig(port=0, max_batch_size=1, max_delay=0, backend="thread")
    with Server([sw.Picky()], config) as server, Client(server.url) as client:
        for _ in range(2):
            with pytest.raises(ModelError) as caught:
                client.infer("picky", _row(3, bad=True))
            assert "Traceback" not in str(caught.value) and "feature overflow" in str(caught.value)
    tracebacks = [m for m in weft_log.messages() if "Traceback" in m]
    assert tracebacks, weft_log.messages()
    assert "in predict" in tracebacks[0] and "raise ValueError" in tracebacks[0]


def test_a_failing_load_logs_its_traceback(weft_log: _Records) -> None:
    with pytest.raises(ModelError, match=r"failed to load: OSError: weights\.bin is missing"):
        Server([sw.FailsToLoad()], ServerConfig(port=0, backend="thread")).start()
    tracebacks = [m for m in weft_log.messages() if "Traceback" in m]
    assert len(tracebacks) == 1 and "in load" in tracebacks[0]


def test_the_same_failure_is_logged_once_then_counted(weft_log: _Records) -> None:
    now = [0.0]
    failures = FailureLog(clock=lambda: now[0])

    def fail(value: int) -> ModelError:
        try:
            raise ValueError(f"feature overflow in [{value}]")
        except ValueError as exc:
            return user_error(f"model 'm' failed to predict: ValueError: {exc}", exc)

    for value in range(5):  # the same failure, with each request's own values
        failures.failed("m", fail(value))
    assert len(weft_log.messages()) == 1 and "Traceback" in weft_log.messages()[0]
    now[0] = 61.0
    failures.failed("m", fail(9))
    assert len(weft_log.messages()) == 2 and "failed 5 more time(s)" in weft_log.messages()[1]
    failures.failed("m", ServeError("something else"))
    assert len(weft_log.messages()) == 3
    # the traceback crosses to a process worker's owner with the error
    carried = pickle.loads(pickle.dumps(fail(1)))
    assert isinstance(carried, ModelError) and "raise ValueError" in (details(carried) or "")


class _ArrayLike:
    def __init__(self, array: np.ndarray) -> None:
        self._array = array

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        return self._array


def _torch_double(inputs: dict[str, np.ndarray]) -> dict[str, object]:
    import torch

    return {"y": torch.from_numpy(inputs["x"] * 2)}


def _array_like_double(inputs: dict[str, np.ndarray]) -> dict[str, object]:
    return {"y": _ArrayLike(inputs["x"] * 2)}


@pytest.mark.parametrize("model", [_torch_double, _array_like_double])
def test_predict_may_return_torch_tensors_and_array_likes(model: object) -> None:
    if model is _torch_double:
        pytest.importorskip("torch", reason="torch is installed only on the GIL interpreter")
    x = np.arange(4, dtype=np.float32).reshape(2, 2)
    with Server([model], ServerConfig(port=0, backend="thread")) as server, Client(server.url) as client:
        name = server.models[0]
        np.testing.assert_array_equal(client.infer(name, {"x": x})["y"], 2 * x)


def test_a_port_in_use_is_said_before_any_model_loads() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        model = sw.SlowLoad()
        with pytest.raises(ServeError, match=f"cannot listen on 127.0.0.1:{port}: .*choose another port"):
            Server([model], ServerConfig(port=port, backend="thread")).start()
        assert not model.loading.is_set(), "no model loads for a server that cannot listen"


@pytest.mark.slow
@pytest.mark.timeout(SUBPROCESS_TEST_TIMEOUT)
def test_weft_serve_on_a_port_in_use_says_so_in_one_line() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "weft", "serve", "tests/serve_workloads.py:Doubler",
                               "--port", str(port)], capture_output=True, text=True, timeout=STARTUP_TIMEOUT)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"weft serve: cannot listen on 127.0.0.1:{port}"), done.stderr
