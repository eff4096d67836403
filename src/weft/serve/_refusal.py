"""Refusing inference at the HTTP protocol level, before any ASGI machinery runs.

Under overload most requests are refused with 503. Through ASGI every refusal costs a
task, a request/response cycle, two ASGI messages and two socket writes on the event
loop thread, the thread that also decodes and encodes the accepted requests. The
protocol here (uvicorn's httptools protocol with three parser callbacks extended)
answers such a request from the parser callbacks with one pre-built write on the
kept-alive connection. Whatever it is not sure about (a response still owed on the
connection, ``Connection: close``, HTTP/1.0, ``Expect: 100-continue``, an upgrade, and
everything :meth:`App.refusal_bytes` passes on) takes the ordinary ASGI path, which
answers the same refusal identically.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from weft.serve._app import App

__all__ = ["protocol_class"]

log = logging.getLogger(__name__)

_HOOKS = ("on_headers_complete", "on_body", "on_message_complete", "on_response_complete")


def protocol_class(app: App) -> type | None:
    """An HTTP protocol class for uvicorn that refuses early for ``app``; None without httptools."""
    try:
        from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
    except ImportError:  # no httptools on this interpreter: uvicorn's h11 protocol, ASGI refusals
        return None
    if not all(callable(getattr(HttpToolsProtocol, hook, None)) for hook in _HOOKS):
        log.info("weft serve: this uvicorn's httptools protocol lacks %s; refusing through ASGI", _HOOKS)
        return None
    status_line = STATUS_LINE[503]

    class RefusingProtocol(HttpToolsProtocol):  # type: ignore[misc]
        _weft_refusal: bytes | None = None

        def on_headers_complete(self) -> None:
            refusal = None
            parser = self.parser
            cycle = self.cycle
            if (parser.get_method() == b"POST" and (cycle is None or cycle.response_complete)
                    and not self.pipeline and not self.expect_100_continue and not parser.should_upgrade()
                    and parser.should_keep_alive() and parser.get_http_version() == "1.1"):
                refusal = app.refusal_bytes(self.url, self.headers)
            if refusal is None:
                super().on_headers_complete()
            else:
                self._weft_refusal = refusal  # answered once the body has gone by

        def on_body(self, body: bytes) -> None:
            if self._weft_refusal is None:
                super().on_body(body)

        def on_message_complete(self) -> None:
            refusal = self._weft_refusal
            if refusal is None:
                super().on_message_complete()
                return
            self._weft_refusal = None
            transport: Any = self.transport
            if transport.is_closing():
                return
            defaults = self.server_state.default_headers  # the date header, refreshed each second
            transport.write(b"".join([status_line, *(k + b": " + v + b"\r\n" for k, v in defaults), refusal]))
            self.on_response_complete()  # keep-alive timer, request count, as after any response

    return RefusingProtocol
