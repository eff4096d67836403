"""What only the process backend must show: shared memory and dead workers."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

import weft.exec
import workloads
from conftest import wait_until, weft_segments
from weft.errors import ConfigError, RemoteError, WorkerDied
from weft.exec import RemoteTraceback


def test_large_arrays_do_not_travel_through_pickle(no_leaks: None) -> None:
    from weft.exec import _shm

    big = np.ones((512, 512), dtype=np.float64)  # 2 MiB
    data, segments = _shm.dumps(big, owner=os.getpid())
    assert len(data) < 1024, "only metadata may be pickled"
    assert len(segments) == 1
    back = _shm.loads(data)
    np.testing.assert_array_equal(back, big)
    assert not weft_segments(), "the receiver unlinks the segment as soon as it maps it"
    del back


def test_small_and_object_arrays_are_pickled() -> None:
    from weft.exec import _shm

    for a in (np.arange(4), np.array([object(), 1], dtype=object)):
        _, segments = _shm.dumps(a, owner=os.getpid())
        assert segments == []


def test_worker_killed_with_sigkill_is_retried(tmp_path, no_leaks: None) -> None:  # type: ignore[no-untyped-def]
    with weft.exec.create("process", workers=2, max_retries=1) as ex:
        assert ex.submit(workloads.die_once, str(tmp_path / "marker")).result(timeout=30) == "survived"
        stats = ex.statistics()
    assert stats.worker_restarts == 1
    assert stats.retried == 1


def test_worker_death_raises_worker_died_naming_the_item(no_leaks: None) -> None:
    with weft.exec.create("process", workers=2, max_retries=1) as ex:
        start = time.monotonic()
        with pytest.raises(WorkerDied, match="killed by SIGKILL") as info:
            list(ex.map(workloads.die_on_two, range(5)))
        assert time.monotonic() - start < 5.0, "a dead worker must be noticed within seconds"
        assert any("item #2" in note for note in info.value.__notes__)
        assert info.value.exitcode == -9
        # the executor keeps working with fresh workers
        assert list(ex.map(workloads.square, range(4))) == [0, 1, 4, 9]


def test_remote_traceback_is_the_cause() -> None:
    with weft.exec.create("process", workers=1) as ex:
        err = ex.submit(workloads.fail_on_three, 3).exception(timeout=30)
    assert isinstance(err, ValueError)
    assert isinstance(err.__cause__, RemoteTraceback)
    assert "fail_on_three" in err.__cause__.text


def test_unpicklable_function_is_a_clear_error() -> None:
    with weft.exec.create("process", workers=1) as ex, pytest.raises(ConfigError, match="module level"):
        ex.submit(lambda x: x, 1)


def test_unpicklable_result_is_reported() -> None:
    with weft.exec.create("process", workers=1) as ex:
        err = ex.submit(workloads.return_lock, 1).exception(timeout=30)
    assert isinstance(err, RemoteError), err
    assert "could not be pickled" in str(err)


def test_close_with_timeout_terminates_busy_workers(tmp_path, no_leaks: None) -> None:  # type: ignore[no-untyped-def]
    ex = weft.exec.create("process", workers=1)
    future = ex.submit(workloads.block_until, str(tmp_path / "never"))  # holds the worker
    assert wait_until((tmp_path / "never.started").exists, timeout=30)
    ex.close(timeout=0.5)
    assert future.done()
    assert isinstance(future.exception(), RuntimeError)
