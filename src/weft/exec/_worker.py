"""The process backend's worker side: the loop each worker process runs.

A worker creates its result pool (:mod:`weft.exec._pool`), announces itself and the
pool with :class:`~weft.exec._wire.Ready`, then answers one task at a time until its
pipe closes, first giving back the pool space each task's message releases. What it times is the user function's call alone (see
:class:`~weft.exec._wire.Answer`): decoding the call may import the function's module,
and that belongs to neither ``busy_seconds`` nor ``cpu_seconds``.
"""

from __future__ import annotations

import contextlib
import multiprocessing.connection
import os
import signal
import time
import traceback

from weft.exec import _pool, _shm
from weft.exec._portable import portable_exception
from weft.exec._wire import (
    Answer,
    Err,
    Ok,
    Outcome,
    Ready,
    Task,
    decode_call,
    decode_task,
    encode_answer,
    encode_outcome,
    encode_ready,
)
from weft.runtime import pid_alive

__all__ = ["run_task", "worker_main"]


def worker_main(conn: multiprocessing.connection.Connection, owner: int, use_shm: bool,
                owner_is_parent: bool = True, inherited_fds: tuple[int, ...] = (), pool_bytes: int = 0) -> None:
    """Loop: receive a task, run it, send the answer. Returns when the pipe closes.

    ``owner`` is the process that created the executor; ``owner_is_parent`` is False when
    a server process (forkserver) started this worker instead of the owner itself;
    ``pool_bytes`` the size of the result pool to create (0: none).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the owner's to handle
    for fd in inherited_fds:  # a forked worker must not hold the owner's pipe ends, or EOF never comes
        try:
            os.close(fd)
        except OSError:
            pass
    pool = _pool.WorkerPool.create(owner, _shm.SHM_DIR, pool_bytes) if use_shm and pool_bytes else None
    _pool._current = pool
    try:
        try:
            conn.send_bytes(encode_ready(Ready(pool.name, pool.nbytes) if pool is not None else Ready()))
        except OSError:
            return  # the owner closed before this worker started
        while True:
            try:
                message = conn.recv_bytes()
            except (EOFError, OSError):
                return
            task = decode_task(message)
            del message
            if pool is not None and task.releases:
                pool.release(task.releases)
            answer = run_task(task, owner=owner, use_shm=use_shm, pool=pool)
            del task
            try:
                conn.send_bytes(encode_answer(answer))
            except OSError:
                return
    finally:
        if pool is not None:  # the owner unlinks the name once it maps the pool; not if it never did
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(_shm.SHM_DIR, pool.name))
        if _shm.supported() and not _owner_alive(owner, owner_is_parent):
            _shm.remove_segments(owner)  # nobody else will: the owner's exit handler did not run


def run_task(task: Task, *, owner: int, use_shm: bool, pool: _pool.WorkerPool | None = None) -> Answer:
    """Decode the call, run it (timed), encode its outcome (large arrays into ``pool``
    while it has room)."""
    busy = cpu = 0.0
    outcome: Outcome
    try:
        call = decode_call(task.payload)
    except BaseException as exc:
        outcome = Err(portable_exception(exc), traceback.format_exc())
    else:
        start, cpu_start = time.perf_counter(), time.thread_time()
        try:
            value = call.fn(*call.args, **call.kwargs)
        except BaseException as exc:
            busy, cpu = time.perf_counter() - start, time.thread_time() - cpu_start
            outcome = Err(portable_exception(exc), traceback.format_exc())
        else:
            busy, cpu = time.perf_counter() - start, time.thread_time() - cpu_start
            outcome = Ok(value)
            del value
        del call
    try:
        payload = encode_outcome(outcome, owner=owner, use_shm=use_shm, pool=pool)
    finally:
        if pool is not None:
            pool.release_unsent()  # result buffers the outcome did not carry
    return Answer(task.task_id, busy, cpu, payload)


def _owner_alive(owner: int, owner_is_parent: bool) -> bool:
    if owner_is_parent:
        # Exact, even if the pid is reused later: a dead parent's children are re-parented.
        return os.getppid() == owner
    return pid_alive(owner)
