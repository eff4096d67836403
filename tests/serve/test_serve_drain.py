"""SIGTERM with 200 requests in flight: not-ready at once, every request answered, clean exit."""

from __future__ import annotations

import asyncio
import re
import signal
import threading

import httpx
import numpy as np
import pytest
from serve_subprocess import SUBPROCESS_TEST_TIMEOUT, weft_serve

from conftest import wait_until
from weft.serve import encode_request


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
