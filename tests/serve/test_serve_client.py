"""The Client: inputs sent as the declared datatypes, large requests split to the model's
max_batch_size, the token from the environment, a server that cannot be reached."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from weft.errors import ConfigError, ProtocolError, ServeError
from weft.serve import Client, Server, ServerConfig, encode_request

DOUBLER = "tests/serve_workloads.py:Doubler"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with Server([DOUBLER], ServerConfig(port=0, max_batch_size=4, max_delay=0, backend="thread")) as srv:
        yield srv


def test_float64_goes_out_as_the_declared_fp32_when_no_value_changes(server: Server) -> None:
    x = np.arange(12, dtype=np.float64).reshape(3, 4) / 4  # exact in FP32
    with Client(server.url) as client:
        y = client.infer("doubler", {"x": x})["y"]
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, 2 * x)


def test_float64_that_fp32_would_round_is_refused_with_the_fix(server: Server) -> None:
    with Client(server.url) as client, pytest.raises(ConfigError) as caught:
        client.infer("doubler", {"x": np.full((1, 4), 0.1)})
    message = str(caught.value)
    assert "'x'" in message and "float64" in message and "FP32" in message and "astype(np.float32)" in message


def test_python_lists_go_out_as_the_declared_datatype(server: Server) -> None:
    with Client(server.url) as client:
        ints = client.infer("doubler", {"x": [[1, 2, 3, 4]]})["y"]
        floats = client.infer("doubler", {"x": [[0.1, 0.2, 0.3, 0.4]]})["y"]
    np.testing.assert_array_equal(ints, np.array([[2, 4, 6, 8]], np.float32))
    np.testing.assert_array_equal(floats, 2 * np.array([[0.1, 0.2, 0.3, 0.4]], np.float32))


def test_more_rows_than_max_batch_size_are_sent_in_parts(server: Server) -> None:
    x = np.arange(9 * 4, dtype=np.float32).reshape(9, 4)
    with Client(server.url) as client:
        assert client.model_config("doubler")["max_batch_size"] == 4
        out = client.infer("doubler", {"x": x})
    np.testing.assert_array_equal(out["y"], 2 * x)
    assert out["rows"].tolist() == [4] * 8 + [1], "three requests of 4, 4 and 1 rows"
    # the raw protocol still refuses a request beyond the limit
    with Client(server.url) as client, pytest.raises(ProtocolError, match="max_batch_size=4"):
        client._infer_once("/v2/models/doubler/infer", {"x": x}, None, True, None, {})


def test_model_config_is_tritons(server: Server) -> None:
    config = httpx.get(f"{server.url}/v2/models/doubler/config").json()
    assert config == {"name": "doubler", "platform": "python", "max_batch_size": 4,
                      "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [-1]}],
                      "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [-1]},
                                 {"name": "rows", "data_type": "TYPE_INT64", "dims": []}]}
    assert httpx.get(f"{server.url}/v2/models/doubler/versions/1/config").status_code == 200
    assert httpx.get(f"{server.url}/v2/models/nope/config").status_code == 404


def test_the_token_comes_from_weft_serve_token(monkeypatch: pytest.MonkeyPatch) -> None:
    config = ServerConfig(port=0, backend="thread", token="s3cret")
    with Server([DOUBLER], config) as server:
        monkeypatch.delenv("WEFT_SERVE_TOKEN", raising=False)
        with Client(server.url) as anonymous, pytest.raises(ServeError, match="HTTP 401"):
            anonymous.infer("doubler", {"x": np.ones((1, 4), np.float32)})
        monkeypatch.setenv("WEFT_SERVE_TOKEN", "s3cret")
        with Client(server.url) as client:
            y = client.infer("doubler", {"x": np.ones((1, 4), np.float32)})["y"]
    np.testing.assert_array_equal(y, np.full((1, 4), 2, np.float32))


def test_a_refused_connection_is_a_serve_error_naming_the_url() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as bound:  # bound, not listening: refuses
        bound.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{bound.getsockname()[1]}"
        with Client(url) as client:
            with pytest.raises(ServeError, match=f"cannot reach the server at {url}") as caught:
                client.infer("doubler", {"x": np.ones((1, 4), np.float32)})
            assert isinstance(caught.value.__cause__, httpx.ConnectError)
            with pytest.raises(ServeError, match=url):
                client.ready()


def test_dir_of_weft_serve_lists_its_public_names_only() -> None:
    import weft.serve

    assert dir(weft.serve) == sorted(weft.serve.__all__)


def test_no_docs_page_loading_scripts_from_a_cdn(server: Server) -> None:
    assert httpx.get(f"{server.url}/docs").status_code == 404
    assert httpx.get(f"{server.url}/redoc").status_code == 404
    assert "/v2/models/{name}/config" in httpx.get(f"{server.url}/openapi.json").json()["paths"]


def test_nan_and_infinity_outputs_are_written_as_triton_writes_them(server: Server) -> None:
    """Triton's JSON writer emits NaN, Infinity and -Infinity tokens (not strict JSON, read by
    Python's json and tritonclient); binary outputs carry them exactly."""
    x = np.array([[np.nan, np.inf, -np.inf, 1.0]], np.float32)
    body, _ = encode_request({"x": x}, binary=False)
    answer = httpx.post(f"{server.url}/v2/models/doubler/infer", content=body)
    assert b"[NaN,Infinity,-Infinity,2.0]" in answer.content
    with Client(server.url, binary=False) as client:
        np.testing.assert_array_equal(client.infer("doubler", {"x": x})["y"], 2 * x)
