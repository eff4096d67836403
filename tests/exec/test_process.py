"""What only the process backend must show: shared memory and dead workers."""

from __future__ import annotations

import functools
import multiprocessing
import os
import time

import numpy as np
import pytest

import weft.exec
import workloads
from conftest import wait_until, weft_segments
from weft.errors import ConfigError, ExecutorClosed, RemoteError, WorkerDied
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


def test_submits_after_idle_periods_always_wake_the_dispatcher() -> None:
    # Two threads alternate submitting one task and waiting for it: the dispatcher keeps
    # going idle and being woken. A lost wake-up would hang here (the timeout fails it).
    import threading

    with weft.exec.create("process", workers=2) as ex:
        def cycle(offset: int) -> list[int]:
            return [ex.submit(workloads.square, offset + i).result(timeout=30) for i in range(200)]

        out: dict[int, list[int]] = {}
        threads = [threading.Thread(target=lambda o=o: out.__setitem__(o, cycle(o))) for o in (0, 1000)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=90)
        assert out == {o: [(o + i) ** 2 for i in range(200)] for o in (0, 1000)}


def test_worker_killed_with_sigkill_is_retried(tmp_path, no_leaks: None) -> None:  # type: ignore[no-untyped-def]
    with weft.exec.create("process", workers=2, max_retries=1) as ex:
        assert ex.submit(workloads.die_once, str(tmp_path / "marker")).result(timeout=30) == "survived"
        stats = ex.statistics()
    assert stats.worker_restarts == 1
    assert stats.retried == 1


#: How soon after a worker's death its task must fail. The dispatcher waits on the death
#: sentinel, so this is a scheduling delay plus starting (not awaiting) a fresh worker:
#: milliseconds, and far below this even with every core busy. Polling for deaths on a
#: timer of a second or more would not pass reliably.
DEATH_NOTICED_WITHIN_SECONDS = 5.0


def test_worker_death_raises_worker_died_naming_the_item(tmp_path, no_leaks: None) -> None:  # type: ignore[no-untyped-def]
    stamp = tmp_path / "killed-at"
    with weft.exec.create("process", workers=2, max_retries=1) as ex:
        with pytest.raises(WorkerDied, match="killed by SIGKILL") as info:
            list(ex.map(functools.partial(workloads.die_on_two, stamp=str(stamp)), range(5)))
        noticed = time.monotonic()
        killed = float(stamp.read_text())  # the last of the two deaths (the call was retried once)
        assert noticed - killed < DEATH_NOTICED_WITHIN_SECONDS, "a dead worker must be noticed at once"
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
    assert wait_until((tmp_path / "never.started").exists, timeout=60)
    ex.close(timeout=0.5)  # returns after the timeout, not after a grace period for the worker
    assert future.done()
    with pytest.raises(ExecutorClosed, match="closed before block_until"):  # a RuntimeError too
        future.result(timeout=0)


@pytest.mark.parametrize("body", [
    "import weft.exec, operator\n"
    "with weft.exec.create('process', workers=2) as ex:\n"
    "    print(list(ex.map(operator.neg, [1, 2])))\n",
    "import weft.data as wd, operator\n"
    "print(list(wd.from_iterable(range(40)).map(operator.neg, workers=2, backend='process').batch(8)))\n",
], ids=["executor", "pipeline"])
def test_script_without_main_guard_prints_only_weft_error(tmp_path, body: str) -> None:  # type: ignore[no-untyped-def]
    """Each spawned worker re-runs the unguarded script: weft's one error, no bootstrap tracebacks."""
    import os
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text(body)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=100, env=env)
    assert out.returncode != 0
    assert "BackendUnavailable" in out.stderr
    assert 'if __name__ == "__main__":' in out.stderr
    assert "bootstrapping phase" not in out.stderr, out.stderr
    assert out.stderr.count("Traceback (most recent call last)") == 1, out.stderr


@pytest.mark.skipif("forkserver" not in multiprocessing.get_all_start_methods(),
                    reason="this platform has no fork server")
def test_workers_start_from_the_fork_server_by_default(no_leaks: None) -> None:
    from multiprocessing import forkserver

    with weft.exec.create("process", workers=1) as ex:
        parent = ex.submit(os.getppid).result(timeout=60)
    assert parent == forkserver._forkserver._forkserver_pid != os.getpid()  # type: ignore[attr-defined]


def test_a_fork_server_preload_the_program_chose_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from multiprocessing import forkserver

    from weft.exec import _start

    chosen = forkserver.ForkServer()
    chosen.set_forkserver_preload(["json"])
    monkeypatch.setattr(forkserver, "_forkserver", chosen)
    _start.preload_fork_server()
    assert chosen._preload_modules == ["json"]  # type: ignore[attr-defined]

    untouched = forkserver.ForkServer()  # multiprocessing's default: the main module
    monkeypatch.setattr(forkserver, "_forkserver", untouched)
    _start.preload_fork_server()
    assert untouched._preload_modules == ["weft.exec._worker", "numpy"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_other_start_methods_work_and_close_promptly(method: str, monkeypatch: pytest.MonkeyPatch,
                                                     no_leaks: None) -> None:
    import warnings

    from weft.exec import _process

    # close() gives idle workers this long to exit by themselves before terminating them;
    # beyond the test's own timeout, close() returns only if they saw their pipe close.
    monkeypatch.setattr(_process, "_EXIT_GRACE_SECONDS", 3600.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads warns on 3.12+
        with weft.exec.create("process", workers=2, start_method=method) as ex:
            assert list(ex.map(workloads.square, range(6))) == [x * x for x in range(6)]


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_closing_one_executor_leaves_another_ones_shared_memory(tmp_path, method: str) -> None:  # type: ignore[no-untyped-def]
    """Two process executors in one process: closing one (its workers exiting included)
    must not remove the segments of the other's queued arguments."""
    import warnings

    big = np.arange(100_000, dtype=np.float64)  # 800 KB: travels through shared memory
    with weft.exec.create("process", workers=1) as keeper:
        release = tmp_path / "release"
        held = keeper.submit(workloads.block_until, str(release))  # holds keeper's only worker
        assert wait_until((tmp_path / "release.started").exists, timeout=60)
        queued = keeper.submit(workloads.double_array, big)  # its segment waits in /dev/shm
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            with weft.exec.create("process", workers=1, start_method=method) as other:
                assert other.submit(workloads.square, 4).result(timeout=60) == 16
        release.touch()
        assert held.result(timeout=60) == str(release)
        np.testing.assert_array_equal(queued.result(timeout=60), big * 2)



def test_submit_after_close_is_refused_before_pickling() -> None:
    ex = weft.exec.create("process", workers=1)
    ex.close()
    with pytest.raises(ExecutorClosed, match="closed: create a new one"):
        ex.submit(workloads.square, 2)


def test_an_exception_that_cannot_be_unpickled_arrives_as_remote_error() -> None:
    with weft.exec.create("process", workers=1) as ex:
        err = ex.submit(workloads.raise_needs_two, 5).exception(timeout=60)
    assert isinstance(err, RemoteError), err
    assert "NeedsTwoArguments: bad input 5" in str(err)
    assert isinstance(err.__cause__, RemoteTraceback) and "raise_needs_two" in err.__cause__.text


def test_start_boots_workers_before_any_submit(no_leaks: None) -> None:
    with weft.exec.create("process", workers=2) as ex:
        assert ex.statistics().submitted == 0
        ex.start()
        ex.start()  # idempotent
        assert wait_until(lambda: ex.ready_workers == 2, timeout=60), "both workers announce themselves"
        assert ex.statistics().submitted == 0, "started without any work"
        assert ex.submit(abs, -3).result(timeout=60) == 3
    with pytest.raises(ExecutorClosed, match="closed"):
        ex.start()
