"""A small Open Inference Protocol client (httpx), binary tensor data by default."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from weft._checks import check_number
from weft.errors import ConfigError, ModelError, ProtocolError, ServeError
from weft.serve._codec import decode_response, encode_request

__all__ = ["Client", "DEFAULT_TIMEOUT"]

_MICROSECONDS = 1e6  # a request's parameters.timeout is in microseconds, as in Triton
#: The longest the client waits for an answer, in seconds: twice the server's default
#: request timeout (30 s), so that the server's own 504 arrives first.
DEFAULT_TIMEOUT = 60.0


class Client:
    """``Client("http://127.0.0.1:8000").infer("mlp", {"x": array}) -> {"y": array}``.

    ``timeout`` is the longest, in seconds, the client waits for any answer (None: no
    limit). Errors come back as :class:`~weft.errors.ProtocolError` (400),
    :class:`~weft.errors.ModelError` (500) or :class:`~weft.errors.ServeError` (others);
    the message starts with the HTTP status.
    """

    def __init__(self, url: str, *, token: str | None = None, timeout: float | None = DEFAULT_TIMEOUT,
                 binary: bool = True) -> None:
        import httpx

        check_number("timeout", timeout, strict=True, none=True)
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.binary = binary
        self._http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)

    def infer(self, model: str, inputs: Mapping[str, Any], *, outputs: Sequence[str] | None = None,
              binary: bool | None = None, request_id: str | None = None, timeout: float | None = None,
              version: str | None = None, timeout_s: float | None = None) -> dict[str, np.ndarray]:
        """Run ``model`` on one request.

        ``timeout`` (seconds) shortens the server's timeout for this request: past it the
        server answers 504 and drops the request before computing it. ``timeout_s`` is
        its old, deprecated name.
        """
        if timeout_s is not None:
            warnings.warn("Client.infer(timeout_s=...) is deprecated: pass timeout= (seconds); timeout_s is "
                          "removed in the next release", DeprecationWarning, stacklevel=2)
            if timeout is not None:
                raise ConfigError("Client.infer got both timeout= and timeout_s=: pass timeout= only")
            timeout = timeout_s
        params: dict[str, Any] = {}
        if timeout is not None:
            check_number("timeout", timeout, strict=True)
            params["timeout"] = max(1, int(timeout * _MICROSECONDS))  # the protocol's unit
        body, header_length = encode_request({k: np.asarray(v) for k, v in inputs.items()}, outputs=outputs,
                                             binary=self.binary if binary is None else binary,
                                             request_id=request_id, parameters=params)
        headers = {"content-type": "application/json" if header_length is None else "application/octet-stream"}
        if header_length is not None:
            headers["inference-header-content-length"] = str(header_length)
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
        response = self._http.post(path, content=body, headers=headers)
        self._check(response)
        length = response.headers.get("inference-header-content-length")
        return decode_response(response.content, int(length) if length is not None else None).outputs

    def live(self) -> bool:
        return bool(self._http.get("/v2/health/live").status_code == 200)

    def ready(self) -> bool:
        return bool(self._http.get("/v2/health/ready").status_code == 200)

    def model_ready(self, model: str) -> bool:
        return bool(self._http.get(f"/v2/models/{model}/ready").status_code == 200)

    def metadata(self) -> dict[str, Any]:
        return self._json(self._http.get("/v2"))

    def model_metadata(self, model: str) -> dict[str, Any]:
        return self._json(self._http.get(f"/v2/models/{model}"))

    def _json(self, response: Any) -> dict[str, Any]:
        self._check(response)
        data: dict[str, Any] = response.json()
        return data

    @staticmethod
    def _check(response: Any) -> None:
        if response.status_code == 200:
            return
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        text = f"HTTP {response.status_code}: {message}"
        if response.status_code == 400:
            raise ProtocolError(text)
        if response.status_code == 500:
            raise ModelError(text)
        raise ServeError(text)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
