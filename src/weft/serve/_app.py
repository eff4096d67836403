"""The thin ASGI layer: the hot routes (infer, health) without a validation framework.

Everything else (metadata, configuration, metrics, the OpenAPI document at
``/openapi.json``) goes to the ``fallback`` ASGI app it is given: the FastAPI app that
:mod:`weft.serve._routes` builds on the same :class:`~weft.serve._service.Service`.
This module imports no web framework.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from weft.serve._http import (
    RETRY_AFTER,
    ASGIApp,
    ClientGone,
    Headers,
    HTTPError,
    Message,
    Receive,
    Scope,
    Send,
    error_body,
    header_length,
    parse_model_path,
    read_body,
    respond,
)
from weft.serve._service import SHUTTING_DOWN, VERSION, Service

__all__ = ["App"]

#: The status logged for a request whose client went away before its answer (nginx's
#: convention; no response is sent).
CLIENT_CLOSED = 499


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """The fallback when no other app is given: 404 for every other route."""
    if scope["type"] == "http":
        await respond(send, 404, error_body(f"no route {scope['path']!r}"))


class App:
    """The ASGI application: infer and health here, every other route to ``fallback``."""

    def __init__(self, service: Service, fallback: ASGIApp = _not_found) -> None:
        self.service = service
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.fallback(scope, receive, send)
            return
        service = self.service
        path: str = scope["path"]
        if path == "/v2/health/live":
            await respond(send, 200, b"")
            return
        if path == "/v2/health/ready":
            await respond(send, service.readiness.status, service.readiness.health_body())
            return
        if not service.authorized(scope["headers"]):
            await respond(send, 401, error_body("missing or wrong bearer token: send 'Authorization: Bearer <token>'"),
                          [(b"www-authenticate", b"Bearer")])
            return
        if scope["method"] == "POST" and path.startswith("/v2/models/") and path.endswith("/infer"):
            target = parse_model_path(path)
            if target.tail == "infer":
                await self.infer_asgi(target.name, target.version, scope, receive, send)
                return
        await self.fallback(scope, receive, send)

    async def infer_asgi(self, name: str, version: str | None, scope: Scope, receive: Receive, send: Send) -> None:
        service = self.service
        task = asyncio.current_task()
        assert task is not None  # we are inside the ASGI server's task
        service.request_started(task)
        status = 500
        started = time.perf_counter()
        try:
            try:
                model = service.model(name, version)
                refusal = service.refusal(model)
                if refusal is not None:
                    # Refused before the body is read or a disconnect watcher starts: under
                    # overload most requests end here, and every cycle they do not spend is
                    # one an accepted request gets. The connection stays open (keep-alive).
                    status = 503
                    await send(refusal.start)
                    await send(refusal.body)
                    return
                json_length = header_length(scope["headers"])
                body = await read_body(scope, receive, service.max_body_bytes)
                watcher = asyncio.ensure_future(receive())
                disconnect = _on_disconnect(task)
                watcher.add_done_callback(disconnect)
                try:
                    answer = await service.infer(model, body, json_length)
                except asyncio.CancelledError:
                    if watcher.done() and not watcher.cancelled() and not service.cutting:
                        status = CLIENT_CLOSED  # nobody to answer
                        return
                    raise
                finally:
                    watcher.remove_done_callback(disconnect)
                    watcher.cancel()
                status = 200
                await respond(send, 200, answer.payload, answer.headers)
            except HTTPError as exc:
                status = exc.status
                await respond(send, exc.status, error_body(str(exc)), exc.headers)
            except ClientGone:
                status = CLIENT_CLOSED
            except asyncio.CancelledError:
                if not service.cutting:
                    raise
                # The shutdown cut this request (Service.cut_in_flight): answer it, and end
                # normally so that the ASGI server logs nothing and the connection closes.
                task.uncancel()
                status = 503
                await respond(send, 503, error_body(SHUTTING_DOWN), [(b"connection", b"close"), *RETRY_AFTER])
        finally:
            service.metrics.request(name, status, time.perf_counter() - started if status == 200 else None)
            service.request_finished(task)

    def refusal_bytes(self, target: bytes, headers: Headers) -> bytes | None:
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
        service = self.service
        if not service.authorized(headers):
            return None
        name, version, tail = parse_model_path(path.decode("latin-1"))
        model = service.models.get(name)
        if tail != "infer" or model is None or (version is not None and version != VERSION):
            return None
        refusal = service.refusal(model)
        if refusal is None:
            return None
        service.metrics.request(name, 503, None)
        return refusal.raw


def _on_disconnect(task: asyncio.Task[Any]) -> Callable[[asyncio.Future[Message]], None]:
    def callback(watcher: asyncio.Future[Message]) -> None:
        if not watcher.cancelled() and watcher.exception() is None and watcher.result().get("type") == "http.disconnect":
            task.cancel()
    return callback
