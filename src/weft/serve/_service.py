"""What the server does for a request, independent of any web framework.

The served models, readiness, the requests in flight, and one inference request from
body to answer (decode, validate, batch, encode). The ASGI layer (:mod:`weft.serve._app`)
and the FastAPI routes (:mod:`weft.serve._routes`) both call it, so they answer alike.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from weft.errors import ConfigError, ProtocolError
from weft.serve._batcher import Batcher, Expired, Overloaded
from weft.serve._codec import InferRequest, decode_request, encode_response
from weft.serve._failures import FailureLog
from weft.serve._http import (
    JSON,
    NOT_READY,
    OCTET,
    Headers,
    HTTPError,
    Readiness,
    Refusal,
    bearer_matches,
    refusal,
)
from weft.serve._metrics import Metrics
from weft.serve._types import TensorSpec, datatype_of

__all__ = ["InferAnswer", "SHUTTING_DOWN", "ServedModel", "Service", "VERSION"]

log = logging.getLogger(__name__)

#: The answer (503) of a request in flight when a shutdown could wait no longer for it.
SHUTTING_DOWN = "server shutting down: the request was stopped before its result was ready; retry on another replica"
#: The one version each model is served under (``/v2/models/{name}/versions/1``).
VERSION = "1"
#: A request's ``parameters.timeout`` is in microseconds, as in Triton.
_MICROSECONDS = 1e6


@dataclass(eq=False)
class ServedModel:
    """A model as the HTTP side knows it: name, declared tensors, and its batcher."""

    name: str
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batcher: Batcher

    def metadata(self) -> dict[str, Any]:
        """The V2 model metadata document."""
        return {"name": self.name, "versions": [VERSION], "platform": self.platform,
                "inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs]}

    def config(self) -> dict[str, Any]:
        """The model configuration as Triton reports it (``/v2/models/{name}/config``): with
        ``max_batch_size``, the most rows one request may carry, and each tensor's dims
        after the batch dimension."""
        def tensors(specs: tuple[TensorSpec, ...]) -> list[dict[str, Any]]:
            return [{"name": t.name, "data_type": f"TYPE_{'STRING' if t.datatype == 'BYTES' else t.datatype}",
                     "dims": list(t.shape[1:])} for t in specs]

        return {"name": self.name, "platform": self.platform,
                "max_batch_size": self.batcher.config.max_batch_size,
                "input": tensors(self.inputs), "output": tensors(self.outputs)}


class InferAnswer(NamedTuple):
    """A 200 answer: the encoded body and its content headers."""

    payload: bytes
    headers: Headers


@dataclass(eq=False, kw_only=True)
class Service:
    """The server's models and state as HTTP sees them; lives on the event loop thread."""

    models: dict[str, ServedModel]
    metrics: Metrics
    timeout: float
    max_body_bytes: int
    token: str | None
    server_version: str
    readiness: Readiness = field(default_factory=Readiness)
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)  # set whenever in_flight drops to 0
    #: Set once a shutdown cut the requests in flight; each then answers 503 (SHUTTING_DOWN).
    cutting: bool = False
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    failures: FailureLog = field(default_factory=FailureLog)
    _misdeclared: set[str] = field(default_factory=set)  # models whose output mismatch was logged

    # -- requests in flight ----------------------------------------------------------
    def request_started(self, task: asyncio.Task[Any] | None = None) -> None:
        self.in_flight += 1
        self.idle.clear()
        if task is not None:
            self._tasks.add(task)

    def request_finished(self, task: asyncio.Task[Any] | None = None) -> None:
        self.in_flight -= 1
        if task is not None:
            self._tasks.discard(task)
        if self.in_flight == 0:
            self.idle.set()

    def cut_in_flight(self) -> int:
        """Stop every inference request in flight; each answers 503 :data:`SHUTTING_DOWN`.

        For a shutdown that cannot wait any longer (past ``drain_timeout``, a second
        interrupt). Returns how many requests were cut.
        """
        self.cutting = True
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel(SHUTTING_DOWN)
        return len(tasks)

    async def wait_idle(self) -> None:
        """Return once no inference request is in flight."""
        while self.in_flight:
            self.idle.clear()
            if self.in_flight:
                await self.idle.wait()

    # -- lookups -----------------------------------------------------------------------
    def authorized(self, headers: Headers) -> bool:
        return self.token is None or bearer_matches(headers, self.token)

    def model(self, name: str, version: str | None) -> ServedModel:
        """The served model, or the 404 naming what is served."""
        model = self.models.get(name)
        if model is None:
            raise HTTPError(404, f"unknown model {name!r}: this server has {sorted(self.models)}")
        if version is not None and version != VERSION:
            raise HTTPError(404, f"model {name!r} has no version {version!r}: it has [{VERSION!r}]")
        return model

    def refusal(self, model: ServedModel) -> Refusal | None:
        """The pre-built 503 when ``model`` takes no request now (not ready, draining, queue full)."""
        if not self.readiness.accepting:
            return refusal(NOT_READY)
        reason = model.batcher.refusal()
        return None if reason is None else refusal(reason)

    # -- inference ---------------------------------------------------------------------
    async def infer(self, model: ServedModel, body: bytes, header_length: int | None) -> InferAnswer:
        """Decode, validate, batch, encode; :class:`HTTPError` for every other answer."""
        if not self.readiness.accepting:
            raise HTTPError.unavailable(NOT_READY)
        try:
            model.batcher.admit()  # refuse before decoding: a 503 must cost next to nothing
            request = decode_request(body, header_length)
            inputs = _validate(model, request)
            deadline = _deadline(request, self.timeout, model.batcher.clock())
            outputs = await model.batcher.infer(inputs, deadline=deadline)
            self._check_outputs(model, outputs)
            payload, json_length = encode_response(model.name, outputs, request_id=request.id,
                                                   requested=request.outputs, binary_output=request.binary_output,
                                                   model_version=VERSION)
        except (ProtocolError, ConfigError) as exc:
            raise HTTPError(400, str(exc)) from None
        except Overloaded as exc:
            raise HTTPError.unavailable(str(exc)) from None
        except Expired as exc:
            raise HTTPError(504, str(exc)) from None
        except (asyncio.CancelledError, HTTPError):
            raise
        except Exception as exc:
            self.failures.failed(model.name, exc)
            raise HTTPError(500, str(exc)) from None
        if json_length is None:
            return InferAnswer(payload, [(b"content-type", JSON)])
        return InferAnswer(payload, [(b"content-type", OCTET),
                                     (b"inference-header-content-length", str(json_length).encode())])


    def _check_outputs(self, model: ServedModel, outputs: dict[str, np.ndarray]) -> None:
        """A 500 when a request's outputs break what the model declares: clients
        trust the metadata (Triton's do), so data that contradicts it is never answered."""
        problem = _output_mismatch(model, outputs)
        if problem is None:
            return
        message = f"model {model.name!r} returned outputs that break its declared outputs: {problem}"
        if model.name not in self._misdeclared:
            self._misdeclared.add(model.name)
            log.error("%s. Make predict() return exactly the declared outputs (names, datatypes, shapes), or "
                      "correct the model's outputs = [TensorSpec(...)]; every such request answers 500", message)
        raise HTTPError(500, message)


def _output_mismatch(model: ServedModel, outputs: dict[str, np.ndarray]) -> str | None:
    """What in ``outputs`` contradicts the model's declared outputs, or None."""
    if not model.outputs:
        return None
    declared = {t.name for t in model.outputs}
    missing = [t.name for t in model.outputs if t.name not in outputs]
    if missing:
        return f"{missing} missing (got {sorted(outputs)})"
    extra = sorted(set(outputs) - declared)
    if extra:
        return f"{extra} not declared (declared: {sorted(declared)})"
    for spec in model.outputs:
        array = outputs[spec.name]
        try:
            datatype = datatype_of(array.dtype)
        except ConfigError:
            datatype = str(array.dtype)
        if datatype != spec.datatype:
            return f"{spec.name!r} is {datatype}, declared {spec.datatype}"
        if not spec.accepts(array.shape):
            return (f"{spec.name!r} has shape {list(array.shape)} for this request, declared {list(spec.shape)} "
                    "(-1 = any)")
    return None


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


def _deadline(request: InferRequest, timeout: float, now: float) -> float:
    """A request may shorten, never lengthen, the server's timeout (``timeout`` in microseconds)."""
    seconds = timeout
    raw = request.parameters.get("timeout")
    if raw is not None:
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            raise ProtocolError(f"parameters.timeout must be a non-negative integer of microseconds, got {raw!r}")
        if raw > 0:
            seconds = min(seconds, raw / _MICROSECONDS)
    return now + seconds
