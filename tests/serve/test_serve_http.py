"""The HTTP server in-process: protocol coverage, errors, overload, timeouts, metrics."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import serve_workloads as sw
from conftest import wait_until
from weft.errors import ConfigError, ModelError, ProtocolError, ServeError
from weft.serve import DATATYPES, Client, Server, ServerConfig, encode_request, serve_in_thread

EXAMPLES = "examples/mlp.py:Model"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    config = ServerConfig(port=0, max_batch_size=16, max_delay=0.001, workers=2, backend="thread",
                          max_body_bytes=1 << 20, queue_size=64)
    with Server(["tests/serve_workloads.py:Doubler", sw.echo, sw.Broken()], config) as srv:
        yield srv


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    with Client(server.url) as c:
        yield c


def test_health_and_metadata(server: Server, client: Client) -> None:
    assert client.live() and client.ready()
    meta = client.metadata()
    assert meta["name"] == "weft" and "binary_tensor_data" in meta["extensions"]
    doubler = client.model_metadata("doubler")
    assert doubler == {"name": "doubler", "versions": ["1"], "platform": "python",
                       "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, -1]}],
                       "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, -1]},
                                   {"name": "rows", "datatype": "INT64", "shape": [-1]}]}
    assert httpx.get(f"{server.url}/v2/models/doubler/versions/1").json() == doubler
    assert httpx.get(f"{server.url}/v2/models/doubler/ready").status_code == 200
    assert httpx.get(f"{server.url}/v2/models/doubler/versions/1/ready").status_code == 200
    assert client.model_ready("echo") and not client.model_ready("nope")
    missing = httpx.get(f"{server.url}/v2/models/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["error"]
    assert httpx.get(f"{server.url}/v2/models/doubler/versions/7").status_code == 404
    assert sorted(server.models) == ["broken", "doubler", "echo"]


def test_openapi_document_lists_the_protocol(server: Server) -> None:
    doc = httpx.get(f"{server.url}/openapi.json").json()
    for path in ("/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{name}", "/v2/models/{name}/ready",
                 "/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer", "/metrics"):
        assert path in doc["paths"], path
    body = doc["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]["content"]
    assert "application/json" in body and "application/octet-stream" in body


@pytest.mark.parametrize("binary", [True, False])
def test_infer_round_trip(client: Client, binary: bool) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = client.infer("doubler", {"x": x}, binary=binary)
    np.testing.assert_array_equal(out["y"], 2 * x)
    np.testing.assert_array_equal(out["rows"].shape, (3,))
    out = client.infer("doubler", {"x": x}, outputs=["y"], binary=binary, version="1")
    assert list(out) == ["y"]


def test_every_datatype_round_trips_over_http(client: Client) -> None:
    rng = np.random.default_rng(0)
    for datatype, dtype in DATATYPES.items():
        if datatype == "BYTES":
            x = np.array([[b"a", b"\xff\x00"], [b"", b"xyz"]], dtype=object)
        elif datatype == "BOOL":
            x = rng.integers(0, 2, (2, 3)).astype(bool)
        else:
            x = (rng.random((2, 3)) * 100).astype(dtype)
        for binary in (True, False):
            if datatype == "BYTES" and not binary:
                x = np.array([[b"a", b"b"], [b"", b"xyz"]], dtype=object)  # JSON carries UTF-8 strings
            y = client.infer("echo", {"t": x}, binary=binary)["t"]
            assert y.shape == x.shape
            if datatype == "BYTES":
                assert y.ravel().tolist() == x.ravel().tolist()
            else:
                assert y.dtype == dtype
                np.testing.assert_array_equal(y, x)


def test_id_is_echoed_and_json_and_binary_outputs_mix(server: Server) -> None:
    body = {"id": "abc-1", "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}, {"name": "rows"}]}
    r = httpx.post(f"{server.url}/v2/models/doubler/infer", json=body)
    assert r.status_code == 200
    length = int(r.headers["inference-header-content-length"])
    doc = json.loads(r.content[:length])
    assert doc["id"] == "abc-1" and doc["model_name"] == "doubler"
    assert doc["outputs"][0]["parameters"]["binary_data_size"] == 8
    assert doc["outputs"][1]["data"] == [1]
    np.testing.assert_array_equal(np.frombuffer(r.content[length:], "<f4"), [2, 4])
    plain = httpx.post(f"{server.url}/v2/models/doubler/infer", json={"inputs": body["inputs"]})
    assert "inference-header-content-length" not in plain.headers
    assert plain.json()["outputs"][0]["data"] == [2.0, 4.0]


def test_errors_have_the_right_status(server: Server, client: Client) -> None:
    url = f"{server.url}/v2/models"
    good = {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}
    cases = {
        404: ("nope", {"inputs": [good]}),
        400: ("doubler", {"inputs": [{**good, "datatype": "INT32"}]}),
    }
    for status, (model, body) in cases.items():
        r = httpx.post(f"{url}/{model}/infer", json=body)
        assert r.status_code == status and isinstance(r.json()["error"], str)
    assert httpx.post(f"{url}/doubler/infer", content=b"{nope").status_code == 400
    assert httpx.post(f"{url}/doubler/infer", json={"inputs": [{**good, "name": "z"}]}).status_code == 400
    assert httpx.post(f"{url}/doubler/infer", json={"inputs": [{**good, "shape": [2]}]}).status_code == 400
    assert httpx.post(f"{url}/doubler/infer", json={"inputs": [good], "outputs": [{"name": "q"}]}).status_code == 400
    assert httpx.post(f"{url}/doubler/infer", json={"inputs": [{**good, "shape": [17, 2], "data": [0] * 34}]}
                      ).status_code == 400  # more rows than max_batch_size
    too_big = httpx.post(f"{url}/doubler/infer", content=b"x" * (2 << 20))
    assert too_big.status_code == 413
    with pytest.raises(ModelError, match=r"HTTP 500.*always fails"):
        client.infer("broken", {"x": np.zeros((1, 2), np.float32)})
    with pytest.raises(ProtocolError, match="HTTP 400"):  # the client casts numbers, never text
        client.infer("doubler", {"x": np.array([["a", "b"]])})
    with pytest.raises(ServeError, match="HTTP 404"):
        client.infer("nope", {"x": np.zeros((1, 2), np.float32)})
    assert client.ready(), "failures never take the server down"


@st.composite
def hostile_bodies(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    kind = draw(st.sampled_from(["bytes", "json", "tensor", "binary"]))
    headers: dict[str, str] = {}
    if kind == "bytes":
        return draw(st.binary(max_size=200)), headers
    scalar = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=4)
    value = st.recursive(scalar, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c,
                                                                                     max_size=3), max_leaves=10)
    if kind == "json":
        return json.dumps(draw(value)).encode(), headers
    tensor = {"name": draw(st.sampled_from(["x", "y", ""])),
              "datatype": draw(st.sampled_from([*DATATYPES, "BF16", 5])),
              "shape": draw(st.lists(st.integers(-1, 20), max_size=3) | value),
              "data": draw(st.lists(scalar, max_size=8) | value)}
    doc: dict[str, object] = {"inputs": [tensor]}
    if draw(st.booleans()):
        doc["parameters"] = {"timeout": draw(scalar), "binary_data_output": draw(scalar)}
    if draw(st.booleans()):
        doc["outputs"] = draw(st.lists(st.dictionaries(st.sampled_from(["name", "parameters"]), value), max_size=2))
    if kind == "binary":
        tensor.pop("data")
        tensor["parameters"] = {"binary_data_size": draw(st.integers(-1, 40))}
        header = json.dumps(doc).encode()
        headers["inference-header-content-length"] = draw(st.sampled_from([str(len(header)), "-3", "x", "99999"]))
        return header + draw(st.binary(max_size=40)), headers
    return json.dumps(doc).encode(), headers


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hostile_bodies(), st.sampled_from(["doubler", "echo", "nope"]))
def test_malformed_requests_get_4xx_never_5xx(server: Server, body: tuple[bytes, dict[str, str]], model: str) -> None:
    content, headers = body
    r = httpx.post(f"{server.url}/v2/models/{model}/infer", content=content, headers=headers)
    assert r.status_code == 200 or 400 <= r.status_code < 500, (r.status_code, r.text)
    if r.status_code != 200:
        assert isinstance(r.json()["error"], str)


def test_server_still_up_after_fuzzing(client: Client) -> None:
    assert client.live() and client.ready()
    np.testing.assert_array_equal(client.infer("doubler", {"x": np.ones((1, 1), np.float32)})["y"], [[2]])


def test_metrics_expose_counters(server: Server, client: Client) -> None:
    client.infer("doubler", {"x": np.ones((2, 3), np.float32)})
    httpx.post(f"{server.url}/v2/models/doubler/infer", content=b"{")
    text = httpx.get(f"{server.url}/metrics").text
    assert 'weft_requests_total{model="doubler",status="200"}' in text
    assert 'weft_requests_total{model="doubler",status="400"}' in text
    for name in ("weft_request_duration_seconds_bucket", "weft_batch_size_bucket", "weft_queue_depth",
                 "weft_running_batches", "weft_batches_total"):
        assert name in text, name
    stats = server.statistics()
    assert stats.ready and stats.backend == "thread" and stats.models["doubler"].completed >= 1


def test_overload_answers_503_at_once_and_200_for_the_rest() -> None:
    """At twice capacity (5 held: 1 running + 4 queued), every answer is 200 or 503, none lost."""
    gate = sw.Gate()
    config = ServerConfig(port=0, max_batch_size=1, max_delay=0, workers=1, queue_size=5, backend="thread")
    statuses: list[int] = []
    retry_after: list[str | None] = []
    lock = threading.Lock()
    try:
        with serve_in_thread([gate], config) as url:
            body, _ = encode_request({"x": np.zeros((1, 4), np.float32)}, binary=False)

            def call() -> None:
                r = httpx.post(f"{url}/v2/models/gate/infer", content=body, timeout=60)
                with lock:
                    statuses.append(r.status_code)
                    retry_after.append(r.headers.get("retry-after"))

            threads = [threading.Thread(target=call) for _ in range(10)]
            for t in threads:
                t.start()
            assert wait_until(lambda: statuses.count(503) == 5, timeout=30), statuses
            gate.open()
            for t in threads:
                t.join()
    finally:
        gate.open()
    assert sorted(statuses) == [200] * 5 + [503] * 5
    assert all(ra == "1" for s, ra in zip(statuses, retry_after, strict=True) if s == 503)


def _post(conn: http.client.HTTPConnection, path: str, body: bytes,
          headers: dict[str, str] | None = None) -> tuple[http.client.HTTPResponse, bytes]:
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    return response, response.read()


@pytest.mark.parametrize("token", [None, "s3cret"])
@pytest.mark.parametrize("path", ["protocol", "asgi"])
def test_a_refusal_keeps_the_connection_open_and_is_counted(token: str | None, path: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A 503 for a full queue leaves the keep-alive connection usable (no reconnect under
    overload), carries Retry-After, and shows in the statistics and the metrics; a request
    that deserves another answer first (404, 401) still gets it while the queue is full.
    Both ways of refusing answer alike: from the HTTP parser callbacks, and through ASGI."""
    from weft.serve import _app, _refusal

    early: list[bytes] = []
    if path == "asgi":
        monkeypatch.setattr(_refusal, "protocol_class", lambda app: None)
    else:
        pytest.importorskip("httptools", reason="the protocol-level refusal needs uvicorn's httptools protocol")
        original = _app.App.refusal_bytes

        def spy(self: _app.App, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes | None:
            answer = original(self, target, headers)
            if answer is not None:
                early.append(target)
            return answer

        monkeypatch.setattr(_app.App, "refusal_bytes", spy)
    gate = sw.Gate()
    config = ServerConfig(port=0, max_batch_size=1, max_delay=0, workers=1, queue_size=2, backend="thread",
                          token=token)  # 2 held: 1 computing + 1 waiting
    auth = {} if token is None else {"Authorization": f"Bearer {token}"}
    body, _ = encode_request({"x": np.zeros((1, 4), np.float32)}, binary=False)
    try:
        with Server([gate], config) as server:
            def call() -> None:
                httpx.post(f"{server.url}/v2/models/gate/infer", content=body, headers=auth, timeout=60)

            running = threading.Thread(target=call)
            running.start()
            assert gate.entered.wait(30)
            queued = threading.Thread(target=call)
            queued.start()
            assert wait_until(lambda: server.statistics().models["gate"].queued == 1, timeout=30)
            address = urlsplit(server.url)
            conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=60)
            closing = http.client.HTTPConnection(address.hostname or "", address.port, timeout=60)
            try:
                refused, text = _post(conn, "/v2/models/gate/infer", body, auth)
                assert refused.status == 503 and refused.getheader("retry-after") == "1", text
                assert refused.getheader("content-type") == "application/json"
                assert "queue is full" in json.loads(text)["error"]
                assert refused.getheader("connection") is None and not refused.will_close
                sock = conn.sock
                versioned, text = _post(conn, "/v2/models/gate/versions/1/infer?x=1", body, auth)
                assert versioned.status == 503 and "queue is full" in json.loads(text)["error"]
                wrong_version, _ = _post(conn, "/v2/models/gate/versions/7/infer", body, auth)
                assert wrong_version.status == 404
                unknown, _ = _post(conn, "/v2/models/nope/infer", body, auth)
                assert unknown.status == 404
                if token is not None:
                    anonymous, _ = _post(conn, "/v2/models/gate/infer", body)
                    assert anonymous.status == 401
                last, text = _post(closing, "/v2/models/gate/infer", body, {**auth, "Connection": "close"})
                assert last.status == 503 and last.will_close and "queue is full" in json.loads(text)["error"]
                gate.open()
                running.join()
                queued.join()
                accepted, text = _post(conn, "/v2/models/gate/infer", body, auth)
                assert accepted.status == 200 and json.loads(text)["outputs"][0]["data"] == [1.0] * 4
                assert conn.sock is sock, "every answer came on the first connection"
            finally:
                conn.close()
                closing.close()
            stats = server.statistics().models["gate"]
            assert stats.rejected == 3 and stats.completed == 3
            # Connection: close goes the ASGI way in both cases.
            assert early == ([] if path == "asgi" else [b"/v2/models/gate/infer", b"/v2/models/gate/versions/1/infer?x=1"])
            metrics = httpx.get(f"{server.url}/metrics", headers=auth).text
            assert 'weft_rejections_total{model="gate",reason="overloaded"} 3.0' in metrics
            assert 'weft_requests_total{model="gate",status="503"} 3.0' in metrics
    finally:
        gate.open()


def test_timeout_answers_504_and_drops_the_request_before_compute() -> None:
    gate = sw.Gate()
    config = ServerConfig(port=0, max_batch_size=1, max_delay=0, workers=1, backend="thread", timeout=30)
    try:
        with Server([gate], config) as server, Client(server.url) as client:
            first: list[np.ndarray] = []
            blocker = threading.Thread(target=lambda: first.append(
                client.infer("gate", {"x": np.zeros((1, 4), np.float32)})["y"]))
            blocker.start()
            assert gate.entered.wait(30)
            # The request can only expire: the gate keeps the one worker busy until after its answer.
            with pytest.raises(ServeError, match="HTTP 504"):
                client.infer("gate", {"x": np.ones((1, 4), np.float32)}, timeout=0.2)
            gate.open()
            blocker.join()
            assert server.statistics().models["gate"].expired == 1
    finally:
        gate.open()
    np.testing.assert_array_equal(first[0], np.ones((1, 4)))
    assert len(gate.batches) == 1 and not gate.batches[0].any(), "the timed-out request never reached the model"


def test_a_disconnected_client_has_its_queued_work_cancelled() -> None:
    gate = sw.Gate()
    config = ServerConfig(port=0, max_batch_size=1, max_delay=0, workers=1, backend="thread")
    try:
        with Server([gate], config) as server:
            body, _ = encode_request({"x": np.zeros((1, 4), np.float32)}, binary=False)
            blocker = threading.Thread(target=lambda: httpx.post(f"{server.url}/v2/models/gate/infer",
                                                                 content=body, timeout=60))
            blocker.start()
            assert gate.entered.wait(30)
            address = urlsplit(server.url)
            conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=60)
            conn.request("POST", "/v2/models/gate/infer", body=body, headers={"Content-Type": "application/json"})
            # leave only once the server holds the request in its queue
            assert wait_until(lambda: server.statistics().models["gate"].queued == 1, timeout=30)
            conn.close()
            assert wait_until(lambda: server.statistics().models["gate"].cancelled == 1, timeout=30)
            assert server.statistics().models["gate"].queued == 0
            gate.open()
            blocker.join()
    finally:
        gate.open()
    assert len(gate.batches) == 1


def test_bearer_token_guards_everything_but_health() -> None:
    config = ServerConfig(port=0, token="s3cret", backend="thread")
    with serve_in_thread(["tests/serve_workloads.py:Doubler"], config) as url:
        assert httpx.get(f"{url}/v2/health/ready").status_code == 200
        assert httpx.get(f"{url}/v2").status_code == 401
        x = np.ones((1, 2), np.float32)
        with Client(url) as anonymous, pytest.raises(ServeError, match="HTTP 401"):
            anonymous.infer("doubler", {"x": x})
        with Client(url, token="wrong") as wrong, pytest.raises(ServeError, match="HTTP 401"):
            wrong.infer("doubler", {"x": x})
        with Client(url, token="s3cret") as good:
            np.testing.assert_array_equal(good.infer("doubler", {"x": x})["y"], 2 * x)


def test_served_answers_match_the_model_and_batches_form(no_leaks: None) -> None:
    import sys

    sys.path.insert(0, "examples")
    try:
        import mlp
    finally:
        sys.path.remove("examples")
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((1 + i % 3, 512)).astype(np.float32) for i in range(24)]
    gate = sw.Gate()
    # One worker, held by the gate's batch until every MLP request has been queued: the
    # batches then form from a full queue, however the 24 client threads are scheduled.
    config = ServerConfig(port=0, max_batch_size=8, max_delay=0.02, workers=1)
    try:
        with Server([gate, EXAMPLES], config) as server:
            results: dict[int, np.ndarray] = {}

            def call(i: int) -> None:
                with Client(server.url) as c:
                    results[i] = c.infer("mlp", {"x": xs[i]})["y"]

            blocker = threading.Thread(target=call_gate, args=(server.url,))
            blocker.start()
            assert gate.entered.wait(30)
            threads = [threading.Thread(target=call, args=(i,)) for i in range(len(xs))]
            for t in threads:
                t.start()
            assert wait_until(lambda: server.statistics().models["mlp"].submitted == len(xs), timeout=60)
            gate.open()
            for t in [blocker, *threads]:
                t.join()
            stats = server.statistics()
            assert stats.backend == "thread"  # both models declare releases_gil
    finally:
        gate.open()
    for i, x in enumerate(xs):
        np.testing.assert_allclose(results[i], mlp.forward(x), rtol=1e-5, atol=1e-5)
    mlp_stats = stats.models["mlp"]
    # The first batch may hold one request; after it at least two share each batch of 8 rows.
    assert mlp_stats.completed == 24 and mlp_stats.batches <= 13, "concurrent requests share batches"


def call_gate(url: str) -> None:
    with Client(url) as c:
        c.infer("gate", {"x": np.zeros((1, 4), np.float32)})


def test_config_is_validated() -> None:
    for bad, message in (({"backend": "gpu"}, "backend must be one of"), ({"backend": "serial"}, "event loop"),
                         ({"port": -1}, "port"), ({"timeout": 0}, "timeout"), ({"drain_timeout": -1}, "drain_timeout"),
                         ({"max_delay": -0.001}, "max_delay"), ({"max_batch_size": 0}, "max_batch_size"),
                         ({"max_body_bytes": 0}, "max_body_bytes"), ({"log_level": "loud"}, "log_level")):
        with pytest.raises(ConfigError, match=message):
            ServerConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        Server([])
    with pytest.raises(ConfigError, match="two models"):
        Server(["tests/serve_workloads.py:Doubler", "tests/serve_workloads.py:Doubler"],
               ServerConfig(port=0, backend="thread")).start()


def test_old_duration_names_work_for_one_release_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match="max_delay="):
        config = ServerConfig(max_delay_ms=5)
    assert config.max_delay == pytest.approx(0.005)
    with pytest.warns(DeprecationWarning, match="timeout="):
        assert ServerConfig(timeout_s=7).timeout == 7
    with pytest.warns(DeprecationWarning, match="drain_timeout="):
        assert ServerConfig(drain_timeout_s=9).drain_timeout == 9
    assert ServerConfig(max_delay=0.005) == config, "the old spelling makes the same config"
    with pytest.warns(DeprecationWarning), pytest.raises(ConfigError, match="both"):
        ServerConfig(timeout=5, timeout_s=7)
    with pytest.warns(DeprecationWarning), pytest.raises(ConfigError, match="timeout_s"):
        ServerConfig(timeout_s="soon")  # type: ignore[arg-type]
    gate = sw.Gate()
    try:
        with Server([gate], ServerConfig(port=0, workers=1, max_batch_size=1, backend="thread")) as server, \
                Client(server.url) as client:
            blocker = threading.Thread(target=call_gate, args=(server.url,))
            blocker.start()
            assert gate.entered.wait(30)
            with pytest.warns(DeprecationWarning, match="timeout="), pytest.raises(ServeError, match="HTTP 504"):
                client.infer("gate", {"x": np.ones((1, 4), np.float32)}, timeout_s=0.05)
            with pytest.raises(ConfigError, match="timeout"):
                client.infer("gate", {"x": np.ones((1, 4), np.float32)}, timeout=0)
            gate.open()
            blocker.join()
    finally:
        gate.open()
    assert len(gate.batches) == 1, "the request that timed out was never computed"


def test_a_backend_added_with_weft_exec_register_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    import weft.exec
    from weft.exec import _registry
    from weft.exec._thread import ThreadExecutor

    monkeypatch.setattr(_registry, "_registered", dict(_registry._registered))  # forget it afterwards
    made: list[ThreadExecutor] = []

    class Mine(ThreadExecutor):
        backend = "mine"

    def factory(*, workers: int) -> ThreadExecutor:  # a factory need take nothing but workers
        made.append(Mine(workers=workers))
        return made[-1]

    weft.exec.register("mine", factory)
    config = ServerConfig(port=0, backend="mine", workers=1)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    with Server(["tests/serve_workloads.py:Doubler"], config) as server, Client(server.url) as client:
        np.testing.assert_array_equal(client.infer("doubler", {"x": x})["y"], 2 * x)
        stats = server.statistics()
        computed = made[0].statistics().completed
    assert stats.backend == "mine" and "'mine'" in stats.backend_reason
    assert len(made) == 1 and computed == 2, "the model loaded and computed on the registered backend"


def test_weft_serve_command_checks_the_backend_against_the_registry() -> None:
    import typer
    from typer.testing import CliRunner

    from weft.serve._cli import register

    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """root"""

    register(root)
    result = CliRunner().invoke(root, ["serve", "tests/serve_workloads.py:Doubler", "--backend", "gpu"])
    assert result.exit_code == 2
    assert "backend must be one of" in result.output and "'thread'" in result.output and "'gpu'" in result.output
    result = CliRunner().invoke(root, ["serve", "tests/serve_workloads.py:Doubler", "--max-delay-ms=-1"])
    assert result.exit_code == 2 and "--max-delay-ms must be a number >= 0" in result.output


def test_close_is_idempotent_and_works_before_start_and_during_loading() -> None:
    never = Server(["tests/serve_workloads.py:Doubler"], ServerConfig(port=0))
    never.close()
    never.close()
    assert never.statistics().ready is False
    with pytest.raises(ServeError, match="closed"):
        never.start()

    model = sw.SlowLoad()
    server = Server([model], ServerConfig(port=0, backend="thread", workers=1))
    urls: list[str] = []
    starter = threading.Thread(target=lambda: urls.append(server.start()))
    starter.start()
    try:
        assert model.loading.wait(30)
        server.close(timeout=0)  # asked while the model loads: the server stops once it has started
    finally:
        model.release.set()
    starter.join()
    server.close()  # waits for the server to finish
    assert urls, "start() returned the URL"
    stats = server.statistics()
    assert stats.ready and stats.draining
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{urls[0]}/v2/health/live", timeout=5)
    server.close()
    with pytest.raises(ServeError, match="already started"):
        server.start()


def test_a_busy_port_is_a_serve_error_naming_it() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match=f"127.0.0.1:{port}"):
            Server(["tests/serve_workloads.py:Doubler"], ServerConfig(port=port, backend="thread")).start()
