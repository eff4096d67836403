"""HTTP primitives of the server, shared by the ASGI layer and the FastAPI routes.

Nothing here knows about models or FastAPI: the error that carries a status, the
``{"error": ...}`` body, the readiness states and the answer they give, the parsing of
the request headers and paths the V2 protocol defines, and the pre-built 503 that
refuses a request cheaply.
"""

from __future__ import annotations

import enum
import functools
import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from weft.errors import ServeError

__all__ = [
    "ASGIApp",
    "ClientGone",
    "HTTPError",
    "Headers",
    "JSON",
    "Message",
    "ModelPath",
    "NOT_READY",
    "OCTET",
    "Phase",
    "RETRY_AFTER",
    "Readiness",
    "Receive",
    "Refusal",
    "Scope",
    "Send",
    "bearer_matches",
    "error_body",
    "header_length",
    "parse_model_path",
    "read_body",
    "refusal",
    "respond",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON = b"application/json"
OCTET = b"application/octet-stream"
#: Every 503 asks the client to come back after this many seconds: a batch takes
#: milliseconds, so one second lets the queue drain without idling the server, and it
#: is the smallest value the header can carry (whole seconds, RFC 9110).
RETRY_AFTER_SECONDS = 1
RETRY_AFTER: Headers = [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())]
NOT_READY = "the server is shutting down or not ready: retry on another replica"
#: The distinct refusal messages a server has: not ready, shutting down, and one
#: "queue full" per queue size in use; far fewer than this many.
_REFUSALS_CACHED = 64


class HTTPError(ServeError):
    """An answer other than 200: ``status``, the message for the error body, extra headers."""

    def __init__(self, status: int, message: str, headers: Headers | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or []

    @classmethod
    def unavailable(cls, message: str) -> HTTPError:
        """A 503 with ``Retry-After``."""
        return cls(503, message, RETRY_AFTER)


class ClientGone(ServeError):
    """The client disconnected before its request was answered."""


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


class Phase(enum.Enum):
    """Where a server is in its life; only ``SERVING`` takes inference requests."""

    LOADING = "loading"    # models loading, port not yet open
    SERVING = "serving"
    DRAINING = "draining"  # refusing new requests, finishing those in flight


class Readiness:
    """The one readiness check: every route and refusal asks it."""

    def __init__(self) -> None:
        self.phase = Phase.LOADING

    @property
    def accepting(self) -> bool:
        return self.phase is Phase.SERVING

    @property
    def started(self) -> bool:
        """The models loaded and the port opened (also while draining)."""
        return self.phase is not Phase.LOADING

    @property
    def draining(self) -> bool:
        return self.phase is Phase.DRAINING

    @property
    def status(self) -> int:
        """The readiness answer's status: 200, or 503 while loading or draining."""
        return 200 if self.accepting else 503

    def health_body(self) -> bytes:
        """The body of ``/v2/health/ready``: empty when ready, else an error body."""
        return b"" if self.accepting else error_body("the server is not ready")


class ModelPath(NamedTuple):
    """``/v2/models/{name}[/versions/{version}]/{tail}``, split."""

    name: str
    version: str | None
    tail: str


def parse_model_path(path: str) -> ModelPath:
    """'/v2/models/m[/versions/v]/tail' -> ModelPath(m, v, tail)."""
    parts = path[len("/v2/models/"):].split("/")
    if len(parts) >= 3 and parts[1] == "versions":
        return ModelPath(parts[0], parts[2], "/".join(parts[3:]))
    return ModelPath(parts[0], None, "/".join(parts[1:]))


def bearer_matches(headers: Headers, token: str) -> bool:
    """Whether ``Authorization: Bearer <token>`` is among ``headers`` (constant-time compare)."""
    expected = b"bearer " + token.encode()
    for key, value in headers:
        if key == b"authorization":
            return hmac.compare_digest(value[:7].lower() + value[7:], expected)
    return False


def header_length(headers: Headers) -> int | None:
    """``Inference-Header-Content-Length`` (the JSON part of a binary body), if sent."""
    for key, value in headers:
        if key == b"inference-header-content-length":
            try:
                length = int(value)
            except ValueError:
                raise HTTPError(400, f"Inference-Header-Content-Length {value.decode('latin-1')!r} "
                                     "is not an integer") from None
            if length < 0:
                raise HTTPError(400, f"Inference-Header-Content-Length {length} is negative")
            return length
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body; 413 beyond ``limit`` bytes, :class:`ClientGone` on a disconnect."""
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
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"the request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def respond(send: Send, status: int, body: bytes, headers: Headers | None = None) -> None:
    all_headers = [(b"content-length", str(len(body)).encode())]
    if headers:
        all_headers += headers
    if body and not any(k == b"content-type" for k, _ in all_headers):
        all_headers.append((b"content-type", JSON))
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class Refusal:
    """A 503 with ``Retry-After``, built once per message.

    ``start`` and ``body`` are its two ASGI messages (the ASGI server only reads them,
    so the same dicts answer every refusal); ``raw`` is the same response as bytes from
    its own headers on, for the protocol-level path (:mod:`weft.serve._refusal`).
    """

    start: Message
    body: Message
    raw: bytes


@functools.lru_cache(maxsize=_REFUSALS_CACHED)
def refusal(message: str) -> Refusal:
    """The pre-built 503 refusal saying ``message``."""
    body = error_body(message)
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", JSON), *RETRY_AFTER]
    start = {"type": "http.response.start", "status": 503, "headers": headers}
    raw = b"".join([*(k + b": " + v + b"\r\n" for k, v in headers), b"\r\n", body])
    return Refusal(start, {"type": "http.response.body", "body": body}, raw)
