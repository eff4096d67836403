"""Both JSON parsers and writers (orjson when installed, the stdlib otherwise) accept and
write the same documents."""

from __future__ import annotations

import json

import pytest

from weft.errors import ProtocolError
from weft.serve import _codec


@pytest.mark.parametrize("text", [b'{"a": NaN}', b'{"a": Infinity, "b": [1, 2.5]}', b'{"x": "\\u00e9"}'])
def test_parser_accepts_what_the_stdlib_accepts(text: bytes) -> None:
    got = _codec._parse_json(text)
    want = json.loads(text)
    assert json.dumps(got) == json.dumps(want)


def test_invalid_json_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="not valid JSON"):
        _codec._load_json(b"{nope", None)


@pytest.mark.parametrize("doc", [
    {"model_name": "m", "outputs": [{"name": "y", "datatype": "FP32", "shape": [3], "data": [1.5, -0.0, 3e38]}]},
    {"model_name": "m", "outputs": [{"name": "y", "datatype": "FP64", "shape": [2], "data": [float("nan"), 1.0]}]},
    {"model_name": "m", "outputs": [{"name": "y", "datatype": "FP64", "shape": [1], "data": [float("-inf")]}]},
    {"model_name": "m", "outputs": [{"name": "y", "datatype": "UINT64", "shape": [1], "data": [2**64 - 1]}]},
    {"model_name": "m", "parameters": {"big": 10**30}, "outputs": [{"name": "s", "data": ["é", "a"]}]},
])
def test_writer_keeps_every_value(doc: dict[str, object]) -> None:
    # orjson would write NaN and Infinity as null and refuses integers beyond 64 bits:
    # such documents go through the stdlib, so nothing is lost either way.
    text = _codec._serialize(doc)
    assert json.dumps(json.loads(text)) == json.dumps(doc)
