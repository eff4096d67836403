"""The V2 codec: round trips for every datatype (JSON and binary) and malformed bodies."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from weft.errors import ProtocolError
from weft.serve import (
    DATATYPES,
    RequestedOutput,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from weft.serve._codec import tensor_from_bytes, tensor_to_bytes

NUMERIC = [d for d in DATATYPES if d != "BYTES"]
shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4)


@st.composite
def tensors(draw: st.DrawFn, datatype: str | None = None) -> tuple[str, np.ndarray]:
    datatype = datatype or draw(st.sampled_from(sorted(DATATYPES)))
    shape = draw(shapes)
    if datatype == "BYTES":
        count = math.prod(shape)
        items = draw(st.lists(st.binary(max_size=12), min_size=count, max_size=count))
        array = np.empty(count, dtype=object)
        array[:] = items
        return datatype, array.reshape(shape)
    dtype = DATATYPES[datatype]
    elements = None
    if dtype.kind == "f":
        elements = hnp.from_dtype(dtype, allow_nan=False)  # NaN != NaN; checked separately below
    return datatype, draw(hnp.arrays(dtype, shape, elements=elements))


def _same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    if a.dtype == object:
        assert b.dtype == object
        assert a.ravel().tolist() == b.ravel().tolist()
    else:
        assert a.dtype == b.dtype, (a.dtype, b.dtype)
        np.testing.assert_array_equal(a, b)


@settings(max_examples=150, deadline=None)
@given(st.lists(tensors(), min_size=1, max_size=4), st.booleans(), st.booleans())
def test_request_round_trip(items: list[tuple[str, np.ndarray]], binary: bool, with_id: bool) -> None:
    inputs = {f"t{i}": array for i, (_, array) in enumerate(items)}
    if not binary:  # JSON carries BYTES only as UTF-8 strings
        inputs = {k: v for k, v in inputs.items() if v.dtype != object or _utf8(v)}
        if not inputs:
            return
    body, header = encode_request(inputs, binary=binary, request_id="r-1" if with_id else None)
    assert (header is not None) is binary  # JSON-only bodies carry no header length
    request = decode_request(body, header)
    assert request.id == ("r-1" if with_id else None)
    assert request.binary_output is binary
    assert list(request.inputs) == list(inputs)
    for name, array in inputs.items():
        _same(array, request.inputs[name])


def _utf8(array: np.ndarray) -> bool:
    try:
        for item in array.ravel().tolist():
            item.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@settings(max_examples=150, deadline=None)
@given(st.lists(tensors(), min_size=1, max_size=4), st.booleans(), st.data())
def test_response_round_trip(items: list[tuple[str, np.ndarray]], binary: bool, data: st.DataObject) -> None:
    outputs = {f"o{i}": array for i, (_, array) in enumerate(items)}
    requested = None
    if data.draw(st.booleans()):
        names = data.draw(st.lists(st.sampled_from(sorted(outputs)), min_size=1, unique=True))
        requested = [RequestedOutput(n, data.draw(st.none() | st.booleans())) for n in names]
    body, header = encode_response("m", outputs, request_id="x", requested=requested, binary_output=binary,
                                   model_version="1")
    response = decode_response(body, header)
    assert response.model_name == "m" and response.id == "x" and response.model_version == "1"
    expected = list(outputs) if requested is None else [r.name for r in requested]
    assert list(response.outputs) == expected
    for name in expected:
        _same(outputs[name], response.outputs[name])
    if requested is not None:
        doc = json.loads(body[:header] if header is not None else body)
        for entry, want in zip(doc["outputs"], requested, strict=True):
            as_binary = binary if want.binary is None else want.binary
            if as_binary:
                assert "binary_data_size" in entry["parameters"] and "data" not in entry


@pytest.mark.parametrize("datatype", sorted(DATATYPES))
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_binary_form_of_every_datatype(datatype: str, data: st.DataObject) -> None:
    _, array = data.draw(tensors(datatype))
    blob = tensor_to_bytes(array)
    if datatype != "BYTES":
        assert len(blob) == array.size * DATATYPES[datatype].itemsize  # raw little-endian values
    _same(array, tensor_from_bytes(datatype, array.shape, blob))


def test_bytes_binary_form_is_length_prefixed_little_endian() -> None:
    array = np.array([b"ab", b"", b"\xff"], dtype=object)
    assert tensor_to_bytes(array) == b"\x02\x00\x00\x00ab" + b"\x00\x00\x00\x00" + b"\x01\x00\x00\x00\xff"


def test_nan_and_infinity_travel_in_json() -> None:
    x = np.array([np.nan, np.inf, -np.inf, 1.5], dtype=np.float32)
    body, header = encode_request({"x": x}, binary=False)
    back = decode_request(body, header).inputs["x"]
    np.testing.assert_array_equal(back, x)


def test_nested_json_data_is_accepted() -> None:
    body = json.dumps({"inputs": [{"name": "x", "datatype": "INT32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}]})
    np.testing.assert_array_equal(decode_request(body.encode()).inputs["x"], np.array([[1, 2], [3, 4]], np.int32))


def test_the_example_of_the_binary_extension() -> None:
    """The spec's example: a JSON header, then 16 bytes of INT32 data for a [1, 4] tensor."""
    header = json.dumps({"inputs": [{"name": "input0", "shape": [1, 4], "datatype": "INT32",
                                     "parameters": {"binary_data_size": 16}}],
                         "outputs": [{"name": "output0", "parameters": {"binary_data": True}}]}).encode()
    data = np.array([[1, 2, 3, 4]], dtype="<i4").tobytes()
    request = decode_request(header + data, len(header))
    np.testing.assert_array_equal(request.inputs["input0"], [[1, 2, 3, 4]])
    assert request.outputs == [RequestedOutput("output0", True)]


BAD_BODIES = [
    b"", b"{", b"[]", b"null", b'{"inputs": []}', b'{"inputs": {}}', b'{"inputs": [1]}',
    b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1]}]}',
    b'{"inputs": [{"name": "x", "datatype": "FP99", "shape": [1], "data": [1]}]}',
    b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1], "data": [1]}]}',
    b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [true], "data": [1]}]}',
    b'{"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [300]}]}',
    b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": [1.5]}]}',
    b'{"inputs": [{"name": "x", "datatype": "BOOL", "shape": [1], "data": [1]}]}',
    b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ["a"]}]}',
    b'{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": [1]}]}',
    b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [[1], [2, 3]]}]}',
    b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}',
    b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}}]}',
    b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "id": 7}',
    b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}, {"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}',
    b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "outputs": [{"name": 1}]}',
    b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "parameters": {"binary_data_output": 1}}',
    b"[" * 100_000,
]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_malformed_requests_raise_protocol_error(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_request(body)


def test_binary_data_that_does_not_fit() -> None:
    header = json.dumps({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 8}}]}).encode()
    with pytest.raises(ProtocolError, match="bytes"):
        decode_request(header + b"\0" * 4, len(header))  # too short
    with pytest.raises(ProtocolError, match="no tensor claims"):
        decode_request(header + b"\0" * 12, len(header))  # leftovers
    with pytest.raises(ProtocolError, match="outside the body"):
        decode_request(header, len(header) + 1)
    bad_bytes = json.dumps({"inputs": [{"name": "s", "shape": [1], "datatype": "BYTES",
                                        "parameters": {"binary_data_size": 6}}]}).encode()
    with pytest.raises(ProtocolError, match="runs past"):
        decode_request(bad_bytes + b"\x09\0\0\0ab", len(bad_bytes))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.none() | st.integers(min_value=-5, max_value=400))
def test_random_bytes_only_ever_raise_protocol_error(body: bytes, header: int | None) -> None:
    try:
        decode_request(body, header)
    except ProtocolError:
        pass


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                           lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=5), children, max_size=4), max_leaves=12)


@st.composite
def almost_valid_requests(draw: st.DrawFn) -> dict[str, object]:
    tensor = {"name": draw(st.sampled_from(["x", "", 3])),
              "datatype": draw(st.sampled_from([*DATATYPES, "BF16", 1])),
              "shape": draw(st.lists(st.integers(-2, 3), max_size=3) | json_values),
              "data": draw(json_values)}
    if draw(st.booleans()):
        del tensor[draw(st.sampled_from(sorted(tensor)))]
    return {"inputs": [tensor], **({"parameters": draw(json_values)} if draw(st.booleans()) else {})}


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(almost_valid_requests())
def test_almost_valid_requests_decode_or_raise_protocol_error(doc: dict[str, object]) -> None:
    try:
        request = decode_request(json.dumps(doc).encode())
    except ProtocolError:
        return
    for array in request.inputs.values():
        assert isinstance(array, np.ndarray)
