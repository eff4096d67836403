"""The ASGI layer on its own: no web framework, no socket, driven message by message."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from weft.serve import Batcher, BatcherConfig, TensorSpec, encode_request
from weft.serve._app import App
from weft.serve._http import HTTPError, Phase, Readiness, header_length, parse_model_path
from weft.serve._metrics import Metrics
from weft.serve._service import ServedModel, Service


def test_the_asgi_layer_imports_no_web_framework() -> None:
    code = ("import sys, weft.serve._app, weft.serve._service, weft.serve._http; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'fastapi', 'starlette', 'uvicorn', 'pydantic'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


async def _call(app: App, method: str, path: str, body: bytes = b"",
                headers: list[tuple[bytes, bytes]] | None = None) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request through ``app``; returns (status, headers, body)."""
    scope = {"type": "http", "method": method, "path": path, "headers": headers or []}
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, answer = sent
    return start["status"], dict(start["headers"]), answer["body"]


def _service(token: str | None = None) -> Service:
    async def double(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"] * 2}

    batcher = Batcher(double, BatcherConfig(max_delay=0))
    model = ServedModel("double", "python", (TensorSpec("x", "FP32", [-1, 2]),),
                        (TensorSpec("y", "FP32", [-1, 2]),), batcher)
    metrics = Metrics(["double"], lambda: {"double": batcher.statistics()})
    return Service(models={"double": model}, metrics=metrics, timeout=30.0, max_body_bytes=1 << 16, token=token,
                   server_version="0")


def test_the_asgi_layer_answers_infer_and_health_without_fastapi() -> None:
    async def main() -> None:
        service = _service()
        app = App(service)  # no FastAPI app given: every other route is a 404
        body, _ = encode_request({"x": np.array([[1, 2]], np.float32)}, binary=False)
        status, _, text = await _call(app, "GET", "/v2/health/ready")
        assert status == 503 and "not ready" in json.loads(text)["error"]
        status, headers, text = await _call(app, "POST", "/v2/models/double/infer", body)
        assert status == 503 and headers[b"retry-after"] == b"1", "no inference while loading"
        service.readiness.phase = Phase.SERVING
        assert (await _call(app, "GET", "/v2/health/ready"))[0] == 200
        assert (await _call(app, "GET", "/v2/health/live"))[0] == 200
        status, _, text = await _call(app, "POST", "/v2/models/double/versions/1/infer", body)
        assert status == 200 and json.loads(text)["outputs"][0]["data"] == [2.0, 4.0]
        status, _, text = await _call(app, "POST", "/v2/models/nope/infer", body)
        assert status == 404 and "double" in json.loads(text)["error"]
        status, _, text = await _call(app, "GET", "/v2")
        assert status == 404 and "/v2" in json.loads(text)["error"]
        service.readiness.phase = Phase.DRAINING
        assert (await _call(app, "GET", "/v2/health/ready"))[0] == 503
        assert (await _call(app, "POST", "/v2/models/double/infer", body))[0] == 503
        assert service.in_flight == 0 and service.idle.is_set()

    asyncio.run(main())


def test_the_token_guards_all_but_health_and_the_fallback_gets_the_rest() -> None:
    async def main() -> None:
        seen: list[str] = []

        async def fallback(scope: Any, receive: Any, send: Any) -> None:
            seen.append(scope["path"])
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"fallback"})

        service = _service(token="s3cret")
        service.readiness.phase = Phase.SERVING
        app = App(service, fallback)
        assert (await _call(app, "GET", "/v2/health/ready"))[0] == 200
        status, headers, _ = await _call(app, "GET", "/v2/models/double")
        assert status == 401 and headers[b"www-authenticate"] == b"Bearer" and not seen
        good = [(b"authorization", b"Bearer s3cret")]
        assert await _call(app, "GET", "/v2/models/double", headers=good) == (200, {}, b"fallback")
        assert seen == ["/v2/models/double"]
        assert app.refusal_bytes(b"/v2/models/double/infer", []) is None, "no token: the 401 comes first"

    asyncio.run(main())


def test_readiness_phases() -> None:
    readiness = Readiness()
    assert (readiness.accepting, readiness.started, readiness.draining, readiness.status) == (False, False, False, 503)
    readiness.phase = Phase.SERVING
    assert (readiness.accepting, readiness.started, readiness.status, readiness.health_body()) == (True, True, 200, b"")
    readiness.phase = Phase.DRAINING
    assert (readiness.accepting, readiness.started, readiness.draining, readiness.status) == (False, True, True, 503)


def test_header_and_path_parsing() -> None:
    assert parse_model_path("/v2/models/m/versions/1/infer") == ("m", "1", "infer")
    assert parse_model_path("/v2/models/m/ready") == ("m", None, "ready")
    assert header_length([(b"inference-header-content-length", b"12")]) == 12
    assert header_length([(b"content-type", b"application/json")]) is None
    for bad, message in ((b"x", "not an integer"), (b"-3", "negative")):
        with pytest.raises(HTTPError, match=message) as caught:
            header_length([(b"inference-header-content-length", bad)])
        assert caught.value.status == 400
