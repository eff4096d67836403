"""Shutdown: SIGTERM with 200 requests in flight loses none; past the drain timeout or at a
second interrupt, the requests left answer 503 "server shutting down"."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import threading

import httpx
import numpy as np
import pytest
from serve_subprocess import SUBPROCESS_TEST_TIMEOUT, weft_serve

import serve_workloads as sw
from conftest import wait_until
from weft.serve import Server, ServerConfig, encode_request


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else -1.0


def _held(url: str) -> bool:
    """All 200 requests are in the server: two batches blocked in the model, the rest queued."""
    return (_metric(url, "weft_requests_in_flight") == 200 and _metric(url, 'weft_running_batches{model="gate"}') == 2
            and _metric(url, 'weft_queue_depth{model="gate"}') >= 200 - 2 * 8)


@pytest.mark.slow
@pytest.mark.timeout(SUBPROCESS_TEST_TIMEOUT)
def test_sigterm_with_200_in_flight_loses_none(tmp_path) -> None:  # type: ignore[no-untyped-def]
    gate = tmp_path / "open"
    body, _ = encode_request({"x": np.ones((1, 4), np.float32)}, binary=False)
    # The drain may take as long as it needs on a busy machine: the gate opens only after
    # the test has seen the server refuse new work, and 200 requests must then finish.
    with weft_serve("tests/serve_workloads.py:Gate", "--max-batch-size", "8", "--max-delay-ms", "1",
                    "--workers", "2", "--queue-size", "400", "--backend", "thread", "--drain-timeout-s", "90",
                    env={"WEFT_TEST_GATE": str(gate)}) as (url, proc):

        async def fire() -> list[int]:
            limits = httpx.Limits(max_connections=250, max_keepalive_connections=250)
            async with httpx.AsyncClient(limits=limits, timeout=120) as client:
                async def one() -> int:
                    r = await client.post(f"{url}/v2/models/gate/infer", content=body)
                    if r.status_code == 200:
                        np.testing.assert_array_equal(np.array(r.json()["outputs"][0]["data"]), np.full(4, 2.0))
                    return r.status_code

                return list(await asyncio.gather(*(one() for _ in range(200))))

        result: list[list[int]] = []
        sender = threading.Thread(target=lambda: result.append(asyncio.run(fire())))
        sender.start()
        try:
            assert wait_until(lambda: _held(url), timeout=120)
            proc.send_signal(signal.SIGTERM)
            assert wait_until(lambda: httpx.get(f"{url}/v2/health/ready").status_code == 503, timeout=60)
            late = httpx.post(f"{url}/v2/models/gate/infer", content=body)
            assert late.status_code == 503 and late.headers["retry-after"] == "1"
        finally:
            gate.write_text("go")
        sender.join(120)
        assert proc.wait(60) == 0, "the server exits once the last request is answered"
    assert result and sorted(result[0]) == [200] * 200


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_requests_past_the_drain_timeout_answer_503_shutting_down() -> None:
    """One request computing (held forever), two queued: a close() whose drain timeout
    passes answers all three 503 "server shutting down", logs one line with the count, and
    nothing else (no traceback per request)."""
    gate = sw.Gate()
    config = ServerConfig(port=0, max_batch_size=1, max_delay=0, workers=1, backend="thread", drain_timeout=0.05)
    body, _ = encode_request({"x": np.ones((1, 4), np.float32)}, binary=False)
    records = _Records()
    watched = [logging.getLogger(name) for name in ("weft", "uvicorn", "uvicorn.error", "asyncio")]
    for logger in watched:
        logger.addHandler(records)
    answers: list[httpx.Response] = []
    server = Server([gate], config)
    try:
        server.start()

        def call() -> None:
            answers.append(httpx.post(f"{server.url}/v2/models/gate/infer", content=body, timeout=120))

        clients = [threading.Thread(target=call) for _ in range(3)]
        for c in clients:
            c.start()
        # The worker takes the first request off the queue before it calls predict: wait
        # for predict itself, then for the other two to be queued behind it.
        assert gate.entered.wait(60)
        assert wait_until(lambda: server.statistics().models["gate"].queued == 2, timeout=60)
        server.close()
        for c in clients:
            c.join(60)
        assert server.statistics().cut == 3
    finally:
        gate.open()
        server.close()  # (again, when the test failed before it: its threads must not outlive it)
        for logger in watched:
            logger.removeHandler(records)
    assert [a.status_code for a in answers] == [503] * 3
    for answer in answers:
        assert answer.json()["error"].startswith("server shutting down") and answer.headers["retry-after"] == "1"
    messages = [r.getMessage() for r in records.records if r.levelno >= logging.WARNING]
    assert len(messages) == 1 and "3 request(s) still in flight after the drain timeout" in messages[0], messages
    assert not any(r.exc_info for r in records.records)


@pytest.mark.slow
@pytest.mark.timeout(SUBPROCESS_TEST_TIMEOUT)
def test_a_second_interrupt_answers_503_and_exits_non_zero(tmp_path) -> None:  # type: ignore[no-untyped-def]
    body, _ = encode_request({"x": np.ones((1, 4), np.float32)}, binary=False)
    with weft_serve("tests/serve_workloads.py:Gate", "--max-batch-size", "1", "--max-delay-ms", "0",
                    "--workers", "1", "--backend", "thread", "--drain-timeout-s", "600",
                    env={"WEFT_TEST_GATE": str(tmp_path / "never")}) as (url, proc):
        answers: list[httpx.Response] = []

        def call() -> None:
            answers.append(httpx.post(f"{url}/v2/models/gate/infer", content=body, timeout=120))

        clients = [threading.Thread(target=call) for _ in range(4)]
        for c in clients:
            c.start()
        assert wait_until(lambda: _metric(url, 'weft_queue_depth{model="gate"}') == 3, timeout=120)
        proc.send_signal(signal.SIGINT)
        assert wait_until(lambda: httpx.get(f"{url}/v2/health/ready").status_code == 503, timeout=60)
        proc.send_signal(signal.SIGINT)
        for c in clients:
            c.join(120)
        assert proc.wait(120) == 1, "requests were cut: the exit code says so"
        assert proc.stderr is not None
        err = " ".join(proc.stderr.read().split())  # rich wraps long log lines
    assert [a.status_code for a in answers] == [503] * 4
    assert all(a.json()["error"].startswith("server shutting down") for a in answers)
    assert "4 request(s) still in flight after a second interrupt" in err
    assert "CancelledError" not in err and "Traceback" not in err, err
