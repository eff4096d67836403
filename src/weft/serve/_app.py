"""The HTTP face: Open Inference Protocol V2 routes over ASGI.

The hot routes (infer, health) are answered by a thin ASGI layer with no per-request
validation framework; everything else (metadata, metrics, the OpenAPI document at
``/openapi.json`` and ``/docs``) is a FastAPI app behind it, which also declares the
infer routes so the OpenAPI document is complete.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from weft.errors import ConfigError, ProtocolError
from weft.serve._batcher import Batcher, Expired, Overloaded
from weft.serve._codec import InferRequest, decode_request, encode_response
from weft.serve._metrics import Metrics
from weft.serve._types import TensorSpec, datatype_of

__all__ = ["App", "ServedModel", "State"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

VERSION = "1"
_JSON = b"application/json"
_OCTET = b"application/octet-stream"
_NOT_READY = "the server is shutting down or not ready: retry on another replica"


@dataclass(eq=False)
class ServedModel:
    name: str
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batcher: Batcher

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "versions": [VERSION], "platform": self.platform,
                "inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs]}


@dataclass(eq=False)
class State:
    """What the HTTP layer reads and the server lifecycle writes (on the loop thread)."""

    models: dict[str, ServedModel]
    metrics: Metrics
    timeout_s: float
    max_body_bytes: int
    token: str | None = None
    ready: bool = False
    draining: bool = False
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    server_version: str = "0"


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or []


class _ClientGone(Exception):
    """The client disconnected before its request was answered."""


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def _parse_model_path(path: str) -> tuple[str, str | None, str]:
    """'/v2/models/m[/versions/v]/tail' -> (m, v, tail)."""
    rest = path[len("/v2/models/"):]
    parts = rest.split("/")
    name = parts[0]
    version = None
    if len(parts) >= 3 and parts[1] == "versions":
        version = parts[2]
        parts = parts[3:]
    else:
        parts = parts[1:]
    return name, version, "/".join(parts)


class App:
    """The ASGI application: fast infer/health, FastAPI for the rest."""

    def __init__(self, state: State) -> None:
        self.state = state
        from weft.serve._routes import build_fastapi

        self.fastapi = build_fastapi(self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.fastapi(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith("/v2/health/"):
            if path == "/v2/health/live":
                await _respond(send, 200, b"")
                return
            if path == "/v2/health/ready":
                ok = self.state.ready and not self.state.draining
                await _respond(send, 200 if ok else 503, b"" if ok else error_body("the server is not ready"))
                return
        if self.state.token is not None and not self._authorized(scope["headers"]):
            await _respond(send, 401, error_body("missing or wrong bearer token: send 'Authorization: Bearer <token>'"),
                           [(b"www-authenticate", b"Bearer")])
            return
        if scope["method"] == "POST" and path.startswith("/v2/models/") and path.endswith("/infer"):
            name, version, tail = _parse_model_path(path)
            if tail == "infer":
                await self.infer_asgi(name, version, scope, receive, send)
                return
        await self.fastapi(scope, receive, send)

    def _authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        expected = b"bearer " + (self.state.token or "").encode()
        for key, value in headers:
            if key == b"authorization":
                return hmac.compare_digest(value[:7].lower() + value[7:], expected)
        return False

    def model(self, name: str, version: str | None) -> ServedModel:
        model = self.state.models.get(name)
        if model is None:
            raise HTTPError(404, f"unknown model {name!r}: this server has {sorted(self.state.models)}")
        if version is not None and version != VERSION:
            raise HTTPError(404, f"model {name!r} has no version {version!r}: it has [{VERSION!r}]")
        return model

    # -- infer ---------------------------------------------------------------------
    async def infer_asgi(self, name: str, version: str | None, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        state.in_flight += 1
        state.idle.clear()
        status = 500
        started = time.perf_counter()
        try:
            try:
                model = self.model(name, version)
                refusal = self._refusal(model)
                if refusal is not None:
                    # Refused before the body is read or a disconnect watcher starts: under
                    # overload most requests end here, and every cycle they do not spend is
                    # one an accepted request gets. The connection stays open (keep-alive).
                    status = 503
                    await send(refusal[0])
                    await send(refusal[1])
                    return
                header_length = _header_length(scope["headers"])
                body = await _read_body(scope, receive, state.max_body_bytes)
                watcher = asyncio.ensure_future(receive())
                task = asyncio.current_task()
                assert task is not None
                disconnect = _on_disconnect(task)
                watcher.add_done_callback(disconnect)
                try:
                    result, headers = await self.infer(model, body, header_length)
                except asyncio.CancelledError:
                    if watcher.done() and not watcher.cancelled():
                        status = 499  # the client went away; nobody to answer
                        return
                    raise
                finally:
                    watcher.remove_done_callback(disconnect)
                    watcher.cancel()
                status = 200
                await _respond(send, 200, result, headers)
            except HTTPError as exc:
                status = exc.status
                await _respond(send, exc.status, error_body(str(exc)), exc.headers)
            except _ClientGone:
                status = 499
        finally:
            state.metrics.request(name, status, time.perf_counter() - started if status == 200 else None)
            state.in_flight -= 1
            if state.in_flight == 0:
                state.idle.set()

    def refusal_bytes(self, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes | None:
        """For the HTTP protocol: the 503's headers after the default ones, and its body, when a
        POST to ``target`` is an inference request that would be refused now; else None.

        None also whenever the ordinary path would answer something else first (unknown
        model or version, missing token, an escaped path): that path then answers.
        """
        if not target.startswith(b"/v2/models/") or b"%" in target:
            return None
        path = target.split(b"?", 1)[0]
        if not path.endswith(b"/infer"):
            return None
        state = self.state
        if state.token is not None and not self._authorized(headers):
            return None
        name, version, tail = _parse_model_path(path.decode("latin-1"))
        model = state.models.get(name)
        if tail != "infer" or model is None or (version is not None and version != VERSION):
            return None
        refusal = self._refusal(model)
        if refusal is None:
            return None
        state.metrics.request(name, 503, None)
        return refusal[2]

    def _refusal(self, model: ServedModel) -> tuple[Message, Message, bytes] | None:
        """The pre-built 503 when ``model`` takes no request now (draining, not ready, queue full)."""
        if self.state.draining or not self.state.ready:
            return _prebuilt(503, _NOT_READY)
        reason = model.batcher.refusal()
        return None if reason is None else _prebuilt(503, reason)

    async def infer(self, model: ServedModel, body: bytes, header_length: int | None
                    ) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """Decode, validate, batch, encode; HTTPError for every refusal."""
        if self.state.draining or not self.state.ready:
            raise HTTPError(503, _NOT_READY, [(b"retry-after", b"1")])
        try:
            model.batcher.admit()  # refuse before decoding: a 503 must cost next to nothing
            request = decode_request(body, header_length)
            inputs = _validate(model, request)
            deadline = _deadline(request, self.state.timeout_s)
            outputs = await model.batcher.infer(inputs, deadline=deadline)
            payload, json_length = encode_response(model.name, outputs, request_id=request.id,
                                                   requested=request.outputs, binary_output=request.binary_output,
                                                   model_version=VERSION)
        except (ProtocolError, ConfigError) as exc:
            raise HTTPError(400, str(exc)) from None
        except Overloaded as exc:
            raise HTTPError(503, str(exc), [(b"retry-after", b"1")]) from None
        except Expired as exc:
            raise HTTPError(504, str(exc)) from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("model %r failed: %s", model.name, exc)
            raise HTTPError(500, str(exc)) from None
        if json_length is None:
            return payload, [(b"content-type", _JSON)]
        return payload, [(b"content-type", _OCTET),
                         (b"inference-header-content-length", str(json_length).encode())]


def _on_disconnect(task: asyncio.Task[Any]) -> Callable[[asyncio.Future[Message]], None]:
    def callback(watcher: asyncio.Future[Message]) -> None:
        if not watcher.cancelled() and watcher.exception() is None and watcher.result().get("type") == "http.disconnect":
            task.cancel()
    return callback


def _header_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for key, value in headers:
        if key == b"inference-header-content-length":
            try:
                length = int(value)
            except ValueError:
                raise HTTPError(400, f"Inference-Header-Content-Length {value.decode('latin-1')!r} is not an integer") from None
            if length < 0:
                raise HTTPError(400, f"Inference-Header-Content-Length {length} is negative")
            return length
    return None


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise HTTPError(400, "Content-Length is not an integer") from None
            if declared > limit:
                raise HTTPError(413, f"the request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"the request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


@functools.lru_cache(maxsize=64)
def _prebuilt(status: int, message: str) -> tuple[Message, Message, bytes]:
    """A refusal with ``Retry-After: 1``, built once per message: its two ASGI messages (the
    server only reads them, so the same dicts answer every refusal) and the same response as
    bytes from its own headers on (for the protocol-level path)."""
    body = error_body(message)
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", _JSON), (b"retry-after", b"1")]
    start = {"type": "http.response.start", "status": status, "headers": headers}
    raw = b"".join([*(k + b": " + v + b"\r\n" for k, v in headers), b"\r\n", body])
    return start, {"type": "http.response.body", "body": body}, raw


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    all_headers = [(b"content-length", str(len(body)).encode())]
    if headers:
        all_headers += headers
    if body and not any(k == b"content-type" for k, _ in all_headers):
        all_headers.append((b"content-type", _JSON))
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


def _validate(model: ServedModel, request: InferRequest) -> dict[str, np.ndarray]:
    """The request's inputs in declared order, checked against the model's tensors."""
    inputs = request.inputs
    if model.outputs and request.outputs is not None:
        known = {t.name for t in model.outputs}
        for want in request.outputs:
            if want.name not in known:
                raise ProtocolError(f"model {model.name!r} has no output {want.name!r}: use one of {sorted(known)}")
    for name, array in inputs.items():
        if array.ndim == 0:
            raise ProtocolError(f"input {name!r} has shape []: the first dimension is the batch")
        if array.shape[0] == 0:
            raise ProtocolError(f"input {name!r} has 0 rows: nothing to infer")
    if not model.inputs:
        return inputs
    ordered: dict[str, np.ndarray] = {}
    for spec in model.inputs:
        if spec.name not in inputs:
            raise ProtocolError(f"model {model.name!r} needs input {spec.name!r} ({spec.datatype} {list(spec.shape)})")
        array = inputs[spec.name]
        datatype = datatype_of(array.dtype)
        if datatype != spec.datatype:
            raise ProtocolError(f"input {spec.name!r} is {datatype}, model {model.name!r} takes {spec.datatype}")
        if not spec.accepts(array.shape):
            raise ProtocolError(f"input {spec.name!r} has shape {list(array.shape)}, model {model.name!r} takes "
                                f"{list(spec.shape)} (-1 = any)")
        ordered[spec.name] = array
    if len(ordered) != len(inputs):
        extra = sorted(set(inputs) - set(ordered))
        raise ProtocolError(f"model {model.name!r} has no input(s) {extra}: it takes {[t.name for t in model.inputs]}")
    return ordered


def _deadline(request: InferRequest, default_s: float) -> float:
    """A request may shorten, never lengthen, the server's timeout (``timeout`` in microseconds)."""
    seconds = default_s
    raw = request.parameters.get("timeout")
    if raw is not None:
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            raise ProtocolError(f"parameters.timeout must be a non-negative integer of microseconds, got {raw!r}")
        if raw > 0:
            seconds = min(seconds, raw / 1e6)
    return asyncio.get_running_loop().time() + seconds
