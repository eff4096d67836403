"""Encode and decode Open Inference Protocol (V2) tensors: JSON and binary data.

Independent of any web framework. A body is JSON, optionally followed by binary
tensor data (Triton's binary tensor data extension): the header
``Inference-Header-Content-Length`` gives the JSON length, each binary tensor
carries ``parameters.binary_data_size`` and its bytes follow the JSON in tensor
order. Binary BYTES elements are each prefixed by a 4-byte little-endian length.
Every malformed body raises :class:`~weft.errors.ProtocolError` naming the field.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from weft.errors import ProtocolError
from weft.serve._types import DATATYPES, datatype_of

_orjson: Any
try:  # optional speed-up; no wheel for every interpreter (none for 3.13t)
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None

__all__ = [
    "InferRequest", "InferResponse", "RequestedOutput", "decode_request", "decode_response",
    "encode_request", "encode_response", "tensor_from_bytes", "tensor_to_bytes",
]

_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=True).encode
_U32 = struct.Struct("<I")
_INT_KINDS = "iu"


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    """An output named in a request; ``binary`` None means 'use the request default'."""

    name: str
    binary: bool | None = None


@dataclass(slots=True)
class InferRequest:
    """A decoded inference request."""

    inputs: dict[str, np.ndarray]
    id: str | None = None
    outputs: list[RequestedOutput] | None = None
    binary_output: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class InferResponse:
    """A decoded inference response (the client side)."""

    model_name: str
    outputs: dict[str, np.ndarray]
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- tensors
def tensor_to_bytes(array: np.ndarray) -> bytes:
    """The binary form of a tensor: raw little-endian values, or length-prefixed BYTES."""
    if array.dtype.kind in "OSU":
        parts: list[bytes] = []
        for item in array.ravel(order="C").tolist():
            data = _as_bytes(item)
            parts.append(_U32.pack(len(data)))
            parts.append(data)
        return b"".join(parts)
    if array.dtype.kind == "b":
        return np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


def tensor_from_bytes(datatype: str, shape: Sequence[int], data: bytes | memoryview, *, name: str = "?") -> np.ndarray:
    """Rebuild a tensor from its binary form (a read-only view where possible)."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return _bytes_elements(data, count, shape, name)
    dtype = DATATYPES[datatype]
    if len(data) != count * dtype.itemsize:
        raise ProtocolError(f"input {name!r}: {len(data)} bytes of binary data do not fit shape "
                            f"{list(shape)} of {datatype} ({count * dtype.itemsize} bytes expected)")
    if datatype == "BOOL":
        flags: np.ndarray = (np.frombuffer(data, dtype=np.uint8) != 0).reshape(shape)
        return flags
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _bytes_elements(data: bytes | memoryview, count: int, shape: Sequence[int], name: str) -> np.ndarray:
    view = memoryview(data)
    items: list[bytes] = []
    offset, end = 0, len(view)
    while offset < end:
        if offset + 4 > end:
            raise ProtocolError(f"input {name!r}: BYTES binary data ends inside a 4-byte length prefix")
        (size,) = _U32.unpack_from(view, offset)
        offset += 4
        if offset + size > end:
            raise ProtocolError(f"input {name!r}: a BYTES element of {size} bytes runs past the end of its data")
        items.append(bytes(view[offset:offset + size]))
        offset += size
    if len(items) != count:
        raise ProtocolError(f"input {name!r}: {len(items)} BYTES elements do not fit shape {list(shape)} "
                            f"({count} expected)")
    out = np.empty(count, dtype=object)
    out[:] = items
    return out.reshape(shape)


def _as_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    return str(item).encode("utf-8")


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(x, list) for x in data):
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for x in stack[-1]:
            if isinstance(x, list):
                stack.append(iter(x))
                break
            flat.append(x)
        else:
            stack.pop()
    return flat


def tensor_from_json(datatype: str, shape: Sequence[int], data: Any, *, name: str = "?") -> np.ndarray:
    """Rebuild a tensor from JSON ``data`` (flat or nested, row-major)."""
    count = math.prod(shape)
    if datatype == "BYTES":
        flat = _flatten(data)
        if len(flat) != count:
            raise ProtocolError(f"input {name!r}: {len(flat)} values do not fit shape {list(shape)} ({count} expected)")
        if not all(isinstance(x, str) for x in flat):
            raise ProtocolError(f"input {name!r}: BYTES data in JSON must be strings; send raw bytes as binary data")
        out = np.empty(count, dtype=object)
        out[:] = [x.encode("utf-8") for x in flat]
        return out.reshape(shape)
    if not isinstance(data, list):
        raise ProtocolError(f"input {name!r}: 'data' must be a list of values, got {type(data).__name__}")
    try:
        raw = np.asarray(data)
    except (ValueError, OverflowError, TypeError, RecursionError) as exc:
        raise ProtocolError(f"input {name!r}: 'data' is not a regular array of numbers ({exc})") from None
    if raw.size != count:
        raise ProtocolError(f"input {name!r}: {raw.size} values do not fit shape {list(shape)} ({count} expected)")
    dtype = DATATYPES[datatype]
    kind = raw.dtype.kind
    if count and dtype.kind in _INT_KINDS and kind in "fO":
        return _big_ints(_flatten(data), dtype, datatype, shape, name)  # NumPy guessed float for large ints
    if count and not _kind_fits(kind, dtype.kind):
        raise ProtocolError(f"input {name!r}: values of kind {raw.dtype.name} are not {datatype}")
    if count and dtype.kind in _INT_KINDS:
        info = np.iinfo(dtype)
        low, high = raw.min(), raw.max()
        if low < info.min or high > info.max:
            raise ProtocolError(f"input {name!r}: values {low}..{high} are out of range for {datatype}")
    with np.errstate(all="ignore"):  # an FP16 overflow becomes inf, as in any cast
        return raw.astype(dtype, copy=False).reshape(shape)


def _big_ints(flat: list[Any], dtype: np.dtype[Any], datatype: str, shape: Sequence[int], name: str) -> np.ndarray:
    if not all(type(x) is int for x in flat):
        raise ProtocolError(f"input {name!r}: {datatype} data must be integers")
    info = np.iinfo(dtype)
    low, high = min(flat), max(flat)
    if low < info.min or high > info.max:
        raise ProtocolError(f"input {name!r}: values {low}..{high} are out of range for {datatype}")
    return np.array(flat, dtype=dtype).reshape(shape)


def _kind_fits(kind: str, target: str) -> bool:
    if target == "b":
        return kind == "b"
    if target in _INT_KINDS:
        return kind in _INT_KINDS
    return kind in "iuf"


def tensor_to_json(array: np.ndarray) -> list[Any] | None:
    """The flat JSON list of a tensor, or None if BYTES elements are not UTF-8."""
    if array.dtype.kind in "OSU":
        try:
            return [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in array.ravel().tolist()]
        except UnicodeDecodeError:
            return None
    values: list[Any] = array.ravel().tolist()
    return values


# --------------------------------------------------------------------------- bodies
def _parse_json(text: bytes) -> Any:
    """orjson when installed (about 10x faster on tensor bodies), else the stdlib.

    orjson refuses NaN and Infinity, which the stdlib (and so tritonclient) accepts:
    such bodies fall back to the stdlib, so both parsers accept the same documents.
    """
    if _orjson is not None:
        try:
            return _orjson.loads(text)
        except ValueError:
            pass
    return json.loads(text)


def _load_json(body: bytes | memoryview, header_length: int | None) -> tuple[dict[str, Any], memoryview]:
    view = memoryview(body)
    if header_length is None:
        header_length = len(view)
    elif not 0 <= header_length <= len(view):
        raise ProtocolError(f"Inference-Header-Content-Length {header_length} is outside the body of {len(view)} bytes")
    try:
        doc = _parse_json(bytes(view[:header_length]))
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ProtocolError(f"the request body must be a JSON object, got {type(doc).__name__}")
    return doc, view[header_length:]


def _parameters(obj: Mapping[str, Any], where: str) -> dict[str, Any]:
    params = obj.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ProtocolError(f"{where}: 'parameters' must be a JSON object")
    return params


def _decode_tensors(items: Any, binary: memoryview, where: str, *, need_data: bool) -> dict[str, np.ndarray]:
    if not isinstance(items, list) or (need_data and not items):
        raise ProtocolError(f"'{where}' must be a non-empty list of tensors")
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ProtocolError(f"{where}[{index}] must be a JSON object")
        name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
        if not isinstance(name, str) or not name:
            raise ProtocolError(f"{where}[{index}]: 'name' must be a non-empty string")
        if name in tensors:
            raise ProtocolError(f"{where}: tensor {name!r} appears twice")
        if not isinstance(datatype, str) or datatype not in DATATYPES:
            raise ProtocolError(f"tensor {name!r}: unsupported datatype {datatype!r}; use one of {sorted(DATATYPES)}")
        if not isinstance(shape, list) or any(type(d) is not int or d < 0 for d in shape):
            raise ProtocolError(f"tensor {name!r}: 'shape' must be a list of non-negative integers, got {shape!r}")
        params = _parameters(item, f"tensor {name!r}")
        size = params.get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise ProtocolError(f"tensor {name!r}: binary_data_size {size!r} does not fit the "
                                    f"{len(binary) - offset} bytes of binary data left")
            tensors[name] = tensor_from_bytes(datatype, shape, binary[offset:offset + size], name=name)
            offset += size
        elif "data" in item:
            tensors[name] = tensor_from_json(datatype, shape, item["data"], name=name)
        else:
            raise ProtocolError(f"tensor {name!r} has neither 'data' nor parameters.binary_data_size")
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} bytes of binary data follow the JSON but no tensor claims them")
    return tensors


def decode_request(body: bytes | memoryview, header_length: int | None = None) -> InferRequest:
    """Decode an infer request body; ``header_length`` is Inference-Header-Content-Length."""
    doc, binary = _load_json(body, header_length)
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError(f"'id' must be a string, got {type(request_id).__name__}")
    params = _parameters(doc, "the request")
    binary_output = params.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise ProtocolError("parameters.binary_data_output must be true or false")
    inputs = _decode_tensors(doc.get("inputs"), binary, "inputs", need_data=True)
    outputs: list[RequestedOutput] | None = None
    raw_outputs = doc.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise ProtocolError("'outputs' must be a list of {name, parameters}")
        outputs = []
        for index, item in enumerate(raw_outputs):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise ProtocolError(f"outputs[{index}] must be an object with a string 'name'")
            flag = _parameters(item, f"output {item['name']!r}").get("binary_data")
            if flag is not None and not isinstance(flag, bool):
                raise ProtocolError(f"output {item['name']!r}: parameters.binary_data must be true or false")
            outputs.append(RequestedOutput(item["name"], flag))
    return InferRequest(inputs=inputs, id=request_id, outputs=outputs, binary_output=binary_output,
                        parameters=params)


def _encode_tensors(tensors: Sequence[tuple[str, np.ndarray, bool]]) -> tuple[list[dict[str, Any]], list[bytes]]:
    described: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, array, binary in tensors:
        entry: dict[str, Any] = {"name": name, "datatype": datatype_of(array.dtype), "shape": list(array.shape)}
        data = None if binary else tensor_to_json(array)
        if data is None:  # binary requested, or BYTES that JSON cannot carry
            blob = tensor_to_bytes(array)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = data
        described.append(entry)
    return described, blobs


def _serialize(doc: dict[str, Any]) -> bytes:
    """orjson when installed and the document has no NaN or Infinity (orjson would write
    them as null, losing the value), else the stdlib, which writes them as JSON5 tokens
    as tritonclient's own encoder does."""
    if _orjson is not None and _all_finite(doc):
        try:
            return bytes(_orjson.dumps(doc))
        except TypeError:  # integers beyond 64 bits
            pass
    return _dumps(doc).encode("utf-8")


def _all_finite(value: Any) -> bool:
    if type(value) is float:
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, list):
        try:  # a flat list of numbers, as tensor data is: checked at C speed
            return all(map(math.isfinite, value))
        except (TypeError, OverflowError):  # strings, nested lists, integers beyond a float
            return all(_all_finite(v) for v in value)
    return True


def _join(doc: dict[str, Any], blobs: list[bytes]) -> tuple[bytes, int | None]:
    header = _serialize(doc)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def encode_response(model_name: str, outputs: Mapping[str, np.ndarray], *, request_id: str | None = None,
                    requested: Sequence[RequestedOutput] | None = None, binary_output: bool = False,
                    model_version: str | None = None) -> tuple[bytes, int | None]:
    """Encode a response; returns (body, header length or None when all JSON)."""
    if requested is None:
        chosen = [(name, array, binary_output) for name, array in outputs.items()]
    else:
        chosen = []
        for want in requested:
            if want.name not in outputs:
                raise ProtocolError(f"output {want.name!r} is not produced by model {model_name!r}: "
                                    f"use one of {sorted(outputs)}")
            chosen.append((want.name, outputs[want.name], binary_output if want.binary is None else want.binary))
    described, blobs = _encode_tensors(chosen)
    doc: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        doc["model_version"] = model_version
    if request_id is not None:
        doc["id"] = request_id
    doc["outputs"] = described
    return _join(doc, blobs)


def encode_request(inputs: Mapping[str, np.ndarray], *, outputs: Sequence[str] | None = None,
                   binary: bool = True, request_id: str | None = None,
                   parameters: Mapping[str, Any] | None = None) -> tuple[bytes, int | None]:
    """Encode a request (the client side); ``binary`` applies to inputs and outputs."""
    described, blobs = _encode_tensors([(n, np.asarray(a), binary) for n, a in inputs.items()])
    doc: dict[str, Any] = {}
    if request_id is not None:
        doc["id"] = request_id
    params = dict(parameters or {})
    if outputs is None:
        params["binary_data_output"] = binary
    doc["inputs"] = described
    if outputs is not None:
        doc["outputs"] = [{"name": n, "parameters": {"binary_data": binary}} for n in outputs]
    if params:
        doc["parameters"] = params
    return _join(doc, blobs)


def decode_response(body: bytes | memoryview, header_length: int | None = None) -> InferResponse:
    """Decode a response body (the client side)."""
    doc, binary = _load_json(body, header_length)
    name = doc.get("model_name")
    if not isinstance(name, str):
        raise ProtocolError("the response has no 'model_name'")
    outputs = _decode_tensors(doc.get("outputs", []), binary, "outputs", need_data=False)
    version = doc.get("model_version")
    rid = doc.get("id")
    return InferResponse(model_name=name, outputs=outputs, model_version=version if isinstance(version, str) else None,
                         id=rid if isinstance(rid, str) else None, parameters=_parameters(doc, "the response"))
