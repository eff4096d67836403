"""The process backend's messages between the owner and its workers.

Each message is one ``send_bytes`` on a worker's pipe, typed here, with one encode and
one decode function per type:

- worker -> owner, once, first: :class:`Ready` (the worker started and imported weft),
  :data:`READY` then ``<pool bytes: u64>`` and the name of its result pool ("" if none);
- owner -> worker: a :class:`Task`, ``<task id: u64><n: u32>`` then ``n`` pool offsets
  the owner no longer views (``<u64>`` each) and the encoded :class:`Call`;
- worker -> owner: an :class:`Answer`, ``<task id: u64><busy: f64><cpu: f64>`` then the
  encoded :class:`Outcome` (:class:`Ok` or :class:`Err`).

Calls and outcomes are pickled through :mod:`weft.exec._shm`, so large NumPy arrays
anywhere in them travel through shared memory: an outcome's through the worker's pool
(:mod:`weft.exec._pool`) while it has room. Decoding a payload maps (and unlinks) its
segments and views the pool; :func:`discard` unlinks those of a payload nobody will
read and releases its pool space.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, NamedTuple

from weft.errors import RemoteError
from weft.exec import _shm
from weft.exec._pool import OwnerPool, WorkerPool

__all__ = [
    "READY",
    "Answer",
    "Call",
    "Err",
    "Ok",
    "Outcome",
    "Ready",
    "RemoteTraceback",
    "Task",
    "decode_answer",
    "decode_call",
    "decode_outcome",
    "decode_ready",
    "decode_task",
    "discard",
    "encode_answer",
    "encode_call",
    "encode_outcome",
    "encode_ready",
    "encode_task",
]

#: How the first message of every worker begins: it started and imported what it
#: needs. Shorter than any answer's header, so it cannot be mistaken for one.
READY = b"ready"

_READY_POOL = struct.Struct("<Q")  # pool bytes
_TASK_HEADER = struct.Struct("<QI")  # task id, released pool offsets
_OFFSET = struct.Struct("<Q")
_ANSWER_HEADER = struct.Struct("<Qdd")  # task id, busy seconds, CPU seconds


class RemoteTraceback(Exception):
    """Carries the traceback text of an exception raised in a worker process.

    Set as the ``__cause__`` of the re-raised exception, so the worker's frames print
    above the local ones. Never raised on its own.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f"\n\"\"\"\n{self.text}\"\"\""


class Call(NamedTuple):
    """What a task asks the worker to run: ``fn(*args, **kwargs)``."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class Ready(NamedTuple):
    """Worker -> owner, first: the worker is ready; its result pool is ``pool`` (a name
    under /dev/shm, which the owner maps and unlinks) of ``pool_bytes``, or "" if none."""

    pool: str = ""
    pool_bytes: int = 0


class Task(NamedTuple):
    """Owner -> worker: run the :class:`Call` encoded in ``payload``; first give back the
    pool space at ``releases``, which the owner's arrays no longer view."""

    task_id: int
    payload: bytes
    releases: tuple[int, ...] = ()


class Ok(NamedTuple):
    """The call returned ``value``."""

    value: Any


class Err(NamedTuple):
    """The call raised ``error``; ``traceback`` is its text in the worker ("" if none)."""

    error: BaseException
    traceback: str

    def exception(self) -> BaseException:
        """The error to raise in the owner, with the worker's traceback as its cause."""
        if self.traceback:
            self.error.__cause__ = RemoteTraceback(self.traceback)
        return self.error


Outcome = Ok | Err


class Answer(NamedTuple):
    """Worker -> owner: the encoded :class:`Outcome` of task ``task_id``.

    ``busy_seconds`` and ``cpu_seconds`` time the user function's call alone (wall and
    thread CPU clock), not decoding the call (which may import the function's module)
    or encoding the outcome.
    """

    task_id: int
    busy_seconds: float
    cpu_seconds: float
    payload: bytes


def encode_call(call: Call, *, owner: int, use_shm: bool) -> tuple[bytes, list[str]]:
    """The pickled call and the shared-memory segments it created (the owner unlinks them
    if the call is never decoded). Raises what pickle raises for an unpicklable call."""
    return _shm.dumps(tuple(call), owner=owner, use_shm=use_shm)


def decode_call(payload: bytes) -> Call:
    """The call in ``payload`` (imports the function's module, maps the segments)."""
    return Call(*_shm.loads(payload))


def encode_ready(ready: Ready) -> bytes:
    return READY + _READY_POOL.pack(ready.pool_bytes) + ready.pool.encode()


def decode_ready(message: bytes) -> Ready | None:
    """The :class:`Ready` in ``message``, or None if it is not one."""
    if not message.startswith(READY) or len(message) < len(READY) + _READY_POOL.size:
        return None
    (pool_bytes,) = _READY_POOL.unpack_from(message, len(READY))
    return Ready(message[len(READY) + _READY_POOL.size:].decode(), pool_bytes)


def encode_task(task: Task) -> bytes:
    releases = task.releases
    return b"".join((_TASK_HEADER.pack(task.task_id, len(releases)),
                     struct.pack(f"<{len(releases)}Q", *releases), task.payload))


def decode_task(message: bytes) -> Task:
    task_id, n = _TASK_HEADER.unpack_from(message)
    start = _TASK_HEADER.size + n * _OFFSET.size
    releases = struct.unpack_from(f"<{n}Q", message, _TASK_HEADER.size)
    return Task(task_id, message[start:], releases)


def encode_outcome(outcome: Outcome, *, owner: int, use_shm: bool, pool: WorkerPool | None = None) -> bytes:
    """The pickled outcome, its large arrays in ``pool`` while it has room; one that
    cannot be pickled becomes an :class:`Err` holding a
    :class:`~weft.errors.RemoteError` that says what could not be sent back."""
    try:
        payload, _ = _shm.dumps(outcome, owner=owner, use_shm=use_shm, pool=pool)
        return payload
    except BaseException as exc:
        if isinstance(outcome, Ok):
            error = RemoteError(
                f"the result of type {type(outcome.value).__name__} could not be pickled to send it back "
                f"({type(exc).__name__}: {exc}); return plain data or NumPy arrays, or use backend='thread'")
            replacement = Err(error, "")
        else:
            original = outcome.error
            replacement = Err(RemoteError(f"{type(original).__module__}.{type(original).__qualname__}: "
                                          f"{original}"), outcome.traceback)
        payload, _ = _shm.dumps(replacement, owner=owner, use_shm=False)
        return payload


def decode_outcome(payload: bytes, pool: OwnerPool | None = None, counts: _shm.ArrayCounts | None = None) -> Outcome:
    """The outcome in ``payload`` (from the worker whose pool is ``pool``, its arrays
    counted in ``counts``); RemoteError when it cannot be read (its segments and pool
    space are then given back)."""
    try:
        outcome = _shm.loads(payload, pool, counts)
    except BaseException as exc:
        raise RemoteError(f"the worker's answer could not be read ({type(exc).__name__}: {exc}); "
                          "return plain data or NumPy arrays, or use backend='thread'") from exc
    if isinstance(outcome, Ok | Err):
        return outcome
    raise RemoteError(f"the worker's answer is not an outcome: {type(outcome).__name__}")


def encode_answer(answer: Answer) -> bytes:
    return _ANSWER_HEADER.pack(answer.task_id, answer.busy_seconds, answer.cpu_seconds) + answer.payload


def decode_answer(message: bytes) -> Answer:
    task_id, busy, cpu = _ANSWER_HEADER.unpack_from(message)
    return Answer(task_id, busy, cpu, message[_ANSWER_HEADER.size:])


def discard(payload: bytes, pool: OwnerPool | None = None) -> None:
    """Unlink the shared-memory segments of a payload nobody will read, and release its
    space in ``pool`` (the sending worker's)."""
    _shm.discard(payload, pool)
