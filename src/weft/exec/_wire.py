"""The process backend's messages between the owner and its workers.

Each message is one ``send_bytes`` on a worker's pipe, typed here, with one encode and
one decode function per type:

- worker -> owner, once, first: :data:`READY` (the worker started and imported weft);
- owner -> worker: a :class:`Task`, ``<task id: u64>`` then the encoded :class:`Call`;
- worker -> owner: an :class:`Answer`, ``<task id: u64><busy: f64><cpu: f64>`` then the
  encoded :class:`Outcome` (:class:`Ok` or :class:`Err`).

Calls and outcomes are pickled through :mod:`weft.exec._shm`, so large NumPy arrays
anywhere in them travel through shared memory. Decoding a payload maps (and unlinks)
its segments; :func:`discard` unlinks those of a payload nobody will read.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, NamedTuple

from weft.errors import RemoteError
from weft.exec import _shm

__all__ = [
    "READY",
    "Answer",
    "Call",
    "Err",
    "Ok",
    "Outcome",
    "RemoteTraceback",
    "Task",
    "decode_answer",
    "decode_call",
    "decode_outcome",
    "decode_task",
    "discard",
    "encode_answer",
    "encode_call",
    "encode_outcome",
    "encode_task",
]

#: The first message of every worker: it started and imported what it needs. Shorter
#: than any answer's header, so it cannot be mistaken for one.
READY = b"ready"

_TASK_HEADER = struct.Struct("<Q")  # task id
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


class Task(NamedTuple):
    """Owner -> worker: run the :class:`Call` encoded in ``payload``."""

    task_id: int
    payload: bytes


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


def encode_task(task: Task) -> bytes:
    return _TASK_HEADER.pack(task.task_id) + task.payload


def decode_task(message: bytes) -> Task:
    (task_id,) = _TASK_HEADER.unpack_from(message)
    return Task(task_id, message[_TASK_HEADER.size:])


def encode_outcome(outcome: Outcome, *, owner: int, use_shm: bool) -> bytes:
    """The pickled outcome; one that cannot be pickled becomes an :class:`Err` holding a
    :class:`~weft.errors.RemoteError` that says what could not be sent back."""
    try:
        payload, _ = _shm.dumps(outcome, owner=owner, use_shm=use_shm)
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


def decode_outcome(payload: bytes) -> Outcome:
    """The outcome in ``payload``; RemoteError when it cannot be read."""
    try:
        outcome = _shm.loads(payload)
    except BaseException as exc:
        discard(payload)
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


def discard(payload: bytes) -> None:
    """Unlink the shared-memory segments of a payload nobody will read."""
    _shm.discard(payload)
