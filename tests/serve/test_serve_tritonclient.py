"""Triton's own HTTP client against a real ``weft serve`` subprocess."""

from __future__ import annotations

import numpy as np
import pytest
from serve_subprocess import SUBPROCESS_TEST_TIMEOUT, weft_serve

httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] has no wheel for this interpreter")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(SUBPROCESS_TEST_TIMEOUT)]  # a server subprocess


@pytest.fixture(scope="module")
def triton() -> object:
    with weft_serve("tests/serve_workloads.py:Doubler", "echo=tests/serve_workloads.py:echo",
                    "--max-batch-size", "8", "--max-delay-ms", "1", "--workers", "2") as (url, _):
        client = httpclient.InferenceServerClient(url=url.removeprefix("http://"))
        try:
            yield client
        finally:
            client.close()


def test_health_and_metadata(triton: object) -> None:
    c = triton
    assert c.is_server_live() and c.is_server_ready()  # type: ignore[attr-defined]
    assert c.is_model_ready("doubler") and not c.is_model_ready("nope")  # type: ignore[attr-defined]
    meta = c.get_server_metadata()  # type: ignore[attr-defined]
    assert meta["name"] == "weft" and "binary_tensor_data" in meta["extensions"]
    model = c.get_model_metadata("doubler")  # type: ignore[attr-defined]
    assert model["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, -1]}]
    assert [o["name"] for o in model["outputs"]] == ["y", "rows"]


@pytest.mark.parametrize("binary", [True, False])
def test_infer(triton: object, binary: bool) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    inp = httpclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    outputs = [httpclient.InferRequestedOutput("y", binary_data=binary)]
    result = triton.infer("doubler", [inp], outputs=outputs, request_id="req-7")  # type: ignore[attr-defined]
    np.testing.assert_array_equal(result.as_numpy("y"), 2 * x)
    assert result.get_response()["id"] == "req-7"
    assert result.as_numpy("rows") is None, "only the requested output comes back"
    everything = triton.infer("doubler", [inp])  # type: ignore[attr-defined]  # no outputs: binary_data_output
    np.testing.assert_array_equal(everything.as_numpy("rows"), [2, 2])


@pytest.mark.parametrize("binary", [True, False])
def test_bytes_and_bool_tensors(triton: object, binary: bool) -> None:
    words = np.array([[b"weft", b"serve"], [b"", b"triton"]], dtype=object)
    flags = np.array([[True, False, True]])
    inputs = []
    for name, value, datatype in (("w", words, "BYTES"), ("f", flags, "BOOL")):
        inp = httpclient.InferInput(name, list(value.shape), datatype)
        inp.set_data_from_numpy(value, binary_data=binary)
        inputs.append(inp)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("w", "f")]
    got = triton.infer("echo", inputs[:1], outputs=outputs[:1])  # type: ignore[attr-defined]
    # tritonclient gives binary BYTES back as bytes, JSON BYTES as str
    back = [[w if isinstance(w, bytes) else w.encode() for w in row] for row in got.as_numpy("w").tolist()]
    assert back == words.tolist()
    result = triton.infer("echo", inputs[1:], outputs=outputs[1:])  # type: ignore[attr-defined]
    np.testing.assert_array_equal(result.as_numpy("f"), flags)


def test_errors_reach_the_client(triton: object) -> None:
    from tritonclient.utils import InferenceServerException

    inp = httpclient.InferInput("x", [1, 2], "INT32")
    inp.set_data_from_numpy(np.zeros((1, 2), np.int32))
    with pytest.raises(InferenceServerException, match="FP32"):
        triton.infer("doubler", [inp])  # type: ignore[attr-defined]
    with pytest.raises(InferenceServerException, match="unknown model"):
        triton.infer("nope", [inp])  # type: ignore[attr-defined]
