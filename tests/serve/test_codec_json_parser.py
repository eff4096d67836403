"""Both JSON parsers (orjson when installed, the stdlib otherwise) accept the same bodies."""

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
