"""A small Open Inference Protocol client (httpx), binary tensor data by default."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from weft._checks import check_number
from weft.errors import ConfigError, ModelError, ProtocolError, ServeError
from weft.serve._codec import decode_response, encode_request
from weft.serve._types import DATATYPES

__all__ = ["Client", "DEFAULT_TIMEOUT", "TOKEN_VARIABLE"]

_MICROSECONDS = 1e6  # a request's parameters.timeout is in microseconds, as in Triton
#: The longest the client waits for an answer, in seconds: twice the server's default
#: request timeout (30 s), so that the server's own 504 arrives first.
DEFAULT_TIMEOUT = 60.0
#: The environment variable ``weft serve --token`` also reads; the client sends it too.
TOKEN_VARIABLE = "WEFT_SERVE_TOKEN"
_NUMERIC = "biuf"


class _ModelInfo:
    """What the client learned about a model: its input datatypes and its largest batch."""

    __slots__ = ("datatypes", "max_batch_size")

    def __init__(self, datatypes: dict[str, str], max_batch_size: int) -> None:
        self.datatypes = datatypes
        self.max_batch_size = max_batch_size  # 0: unknown, never split


class Client:
    """``Client("http://127.0.0.1:8000").infer("mlp", {"x": array}) -> {"y": array}``.

    ``token`` defaults to ``$WEFT_SERVE_TOKEN``. ``timeout`` is the longest, in seconds,
    the client waits for any answer (None: no limit). Errors come back as
    :class:`~weft.errors.ProtocolError` (400), :class:`~weft.errors.ModelError` (500) or
    :class:`~weft.errors.ServeError` (others, and a server that cannot be reached); the
    message starts with the HTTP status.

    Before a model's first request the client reads its metadata and configuration
    (once): inputs then go out as the declared datatypes (Python lists converted; a NumPy
    array cast only when no value changes, else a :class:`~weft.errors.ConfigError`
    saying how to convert it), and a request with more rows than the model's
    ``max_batch_size`` is sent in parts whose outputs are joined.
    """

    def __init__(self, url: str, *, token: str | None = None, timeout: float | None = DEFAULT_TIMEOUT,
                 binary: bool = True) -> None:
        import httpx

        check_number("timeout", timeout, strict=True, none=True)
        if token is None:
            token = os.environ.get(TOKEN_VARIABLE) or None
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.binary = binary
        self._http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)
        self._models: dict[str, _ModelInfo] = {}

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
        info = self._info(model)
        arrays = {name: _as_declared(name, value, info.datatypes.get(name), model) for name, value in inputs.items()}
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
        binary = self.binary if binary is None else binary
        parts = _split(arrays, info.max_batch_size)
        answers = [self._infer_once(path, part, outputs, binary, request_id, params) for part in parts]
        if len(answers) == 1:
            return answers[0]
        return {name: np.concatenate([a[name] for a in answers]) for name in answers[0]}

    def _infer_once(self, path: str, inputs: dict[str, np.ndarray], outputs: Sequence[str] | None, binary: bool,
                    request_id: str | None, params: dict[str, Any]) -> dict[str, np.ndarray]:
        body, header_length = encode_request(inputs, outputs=outputs, binary=binary, request_id=request_id,
                                             parameters=params)
        headers = {"content-type": "application/json" if header_length is None else "application/octet-stream"}
        if header_length is not None:
            headers["inference-header-content-length"] = str(header_length)
        response = self._send("POST", path, content=body, headers=headers)
        self._check(response)
        length = response.headers.get("inference-header-content-length")
        return decode_response(response.content, int(length) if length is not None else None).outputs

    def _info(self, model: str) -> _ModelInfo:
        """The model's declared input datatypes and largest batch, asked once per model."""
        info = self._models.get(model)
        if info is not None:
            return info
        datatypes: dict[str, str] = {}
        response = self._send("GET", f"/v2/models/{model}")
        if response.status_code != 200:
            return _ModelInfo({}, 0)  # unknown model: its infer request gets the server's error
        for tensor in response.json().get("inputs", []):
            if isinstance(tensor, dict) and tensor.get("datatype") in DATATYPES:
                datatypes[str(tensor.get("name"))] = str(tensor["datatype"])
        limit = 0
        config = self._send("GET", f"/v2/models/{model}/config")
        if config.status_code == 200:  # Triton's model configuration extension; others may lack it
            value = config.json().get("max_batch_size", 0)
            limit = value if isinstance(value, int) and value > 0 else 0
        info = self._models[model] = _ModelInfo(datatypes, limit)
        return info

    def live(self) -> bool:
        return bool(self._send("GET", "/v2/health/live").status_code == 200)

    def ready(self) -> bool:
        return bool(self._send("GET", "/v2/health/ready").status_code == 200)

    def model_ready(self, model: str) -> bool:
        return bool(self._send("GET", f"/v2/models/{model}/ready").status_code == 200)

    def metadata(self) -> dict[str, Any]:
        return self._json(self._send("GET", "/v2"))

    def model_metadata(self, model: str) -> dict[str, Any]:
        return self._json(self._send("GET", f"/v2/models/{model}"))

    def model_config(self, model: str) -> dict[str, Any]:
        """The model's configuration (``max_batch_size``, inputs, outputs), as Triton reports it."""
        return self._json(self._send("GET", f"/v2/models/{model}/config"))

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ServeError(f"no answer from {self.url}{path} within the client's timeout "
                             f"({type(exc).__name__}): raise Client(timeout=...) or check the server") from exc
        except httpx.TransportError as exc:
            raise ServeError(f"cannot reach the server at {self.url} ({type(exc).__name__}: {exc}): is it running "
                             "there (weft serve MODEL --port PORT), and is the URL right?") from exc

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


def _as_declared(name: str, value: Any, datatype: str | None, model: str) -> np.ndarray:
    """``value`` as the declared ``datatype``: lists converted, arrays cast when no value changes."""
    if datatype is None or datatype == "BYTES":
        return np.asarray(value)
    dtype = DATATYPES[datatype]
    is_array = isinstance(value, np.ndarray)
    array = np.asarray(value)
    if array.dtype == dtype or array.dtype.kind not in _NUMERIC:
        return array
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cast = array.astype(dtype)
        same = bool(np.array_equal(cast.astype(array.dtype), array, equal_nan=array.dtype.kind == "f"))
    # Python numbers have no declared precision: rounding a list of floats to FP32 is what
    # the user asked for. An integer datatype must still hold every value exactly.
    if same or (not is_array and dtype.kind == "f"):
        return cast
    what = f"a {array.dtype} array" if is_array else "a list of numbers"
    raise ConfigError(f"input {name!r} is {what}, model {model!r} takes {datatype}, and converting would "
                      f"change some values: convert it yourself, e.g. np.asarray(x).astype(np.{dtype.name}), "
                      "if that is what you want")


def _split(inputs: dict[str, np.ndarray], limit: int) -> list[dict[str, np.ndarray]]:
    """The request in parts of at most ``limit`` rows (0: one part)."""
    rows = {a.shape[0] for a in inputs.values() if a.ndim > 0}
    if limit <= 0 or len(rows) != 1:
        return [inputs]
    total = rows.pop()
    if total <= limit:
        return [inputs]
    return [{name: a[start:start + limit] for name, a in inputs.items()} for start in range(0, total, limit)]
