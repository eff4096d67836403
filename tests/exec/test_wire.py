"""The process backend's messages (weft.exec._wire) and the worker's run_task, in process."""

from __future__ import annotations

import copyreg
import os
import threading

import numpy as np
import pytest

import workloads
from weft.errors import RemoteError
from weft.exec import _wire
from weft.exec._worker import run_task

OWNER = os.getpid()


def test_task_round_trip() -> None:
    payload, segments = _wire.encode_call(_wire.Call(workloads.square, (3,), {"k": 1}), owner=OWNER,
                                          use_shm=False)
    assert segments == []
    task = _wire.decode_task(_wire.encode_task(_wire.Task(2**40 + 5, payload)))
    assert task == _wire.Task(2**40 + 5, payload)
    assert _wire.decode_call(task.payload) == _wire.Call(workloads.square, (3,), {"k": 1})


def test_answer_round_trip_keeps_exact_timings() -> None:
    answer = _wire.Answer(9, 0.1 + 0.2, 1e-9, b"payload")
    assert _wire.decode_answer(_wire.encode_answer(answer)) == answer
    assert len(_wire.READY) < len(_wire.encode_answer(_wire.Answer(0, 0.0, 0.0, b"")))


def test_outcomes_round_trip_with_arrays_in_shared_memory(no_leaks: None) -> None:
    big = np.arange(50_000, dtype=np.float64)
    back = _wire.decode_outcome(_wire.encode_outcome(_wire.Ok({"a": big}), owner=OWNER, use_shm=True))
    assert isinstance(back, _wire.Ok)
    np.testing.assert_array_equal(back.value["a"], big)
    err = _wire.decode_outcome(_wire.encode_outcome(_wire.Err(ValueError("no"), "Traceback: here\n"),
                                                    owner=OWNER, use_shm=True))
    assert isinstance(err, _wire.Err)
    raised = err.exception()
    assert isinstance(raised, ValueError) and str(raised) == "no"
    assert isinstance(raised.__cause__, _wire.RemoteTraceback)
    assert raised.__cause__.text == "Traceback: here\n"
    assert _wire.Err(KeyError("k"), "").exception().__cause__ is None
    del back


def test_an_outcome_that_cannot_be_pickled_becomes_a_remote_error() -> None:
    payload = _wire.encode_outcome(_wire.Ok(threading.Lock()), owner=OWNER, use_shm=False)
    outcome = _wire.decode_outcome(payload)
    assert isinstance(outcome, _wire.Err) and isinstance(outcome.error, RemoteError)
    assert "result of type lock could not be pickled" in str(outcome.error)


def test_an_unreadable_answer_is_a_remote_error() -> None:
    with pytest.raises(RemoteError, match="could not be read"):
        _wire.decode_outcome(b"not a pickle")
    import pickle

    with pytest.raises(RemoteError, match="not an outcome: str"):
        _wire.decode_outcome(pickle.dumps("hello"))


def _task(fn: object, *args: object) -> _wire.Task:
    payload, _ = _wire.encode_call(_wire.Call(fn, args, {}), owner=OWNER, use_shm=False)  # type: ignore[arg-type]
    return _wire.Task(1, payload)


def test_run_task_times_the_call_alone() -> None:
    # 0.2 s to unpickle the argument and 0.2 s to pickle the result: neither is the call's.
    answer = run_task(_task(workloads.identity, workloads.SlowToPickle(0.2)), owner=OWNER, use_shm=False)
    assert answer.task_id == 1
    assert answer.busy_seconds < 0.2 and answer.cpu_seconds < 0.2
    outcome = _wire.decode_outcome(answer.payload)
    assert isinstance(outcome, _wire.Ok) and isinstance(outcome.value, workloads.SlowToPickle)


def test_run_task_reports_errors_portably(monkeypatch: pytest.MonkeyPatch) -> None:
    # Importing dask's distributed (the cluster tests do) registers tblib's reducer for
    # every exception class then defined, which makes this one unpickle after all; the
    # worker processes never import it, so the call here runs as it would in them.
    monkeypatch.delitem(copyreg.dispatch_table, workloads.NeedsTwoArguments, raising=False)
    answer = run_task(_task(workloads.raise_needs_two, 4), owner=OWNER, use_shm=False)
    outcome = _wire.decode_outcome(answer.payload)
    assert isinstance(outcome, _wire.Err) and isinstance(outcome.error, RemoteError)
    assert "NeedsTwoArguments: bad input 4" in str(outcome.error)
    assert "raise_needs_two" in outcome.traceback


def test_run_task_reports_a_call_that_cannot_be_decoded() -> None:
    answer = run_task(_wire.Task(3, b"garbage"), owner=OWNER, use_shm=False)
    outcome = _wire.decode_outcome(answer.payload)
    assert isinstance(outcome, _wire.Err) and answer.busy_seconds == 0.0
