"""The process workers' reused shared-memory result pools (weft.exec._pool).

In process: the allocator, and one pool mapped by both sides in this process (the
worker's encoding, the owner's arrays, releases carried back), so "never overwritten
while a view is alive" is checked value by value. Then through real worker processes:
the pool is used, the fallback when it is full or too small, and no leaks (under
/dev/shm, in this process's mappings) after close, an early break and a SIGKILL.
"""

from __future__ import annotations

import gc
import multiprocessing.resource_tracker
import os
import signal
from pathlib import Path

import numpy as np
import pytest

import weft.data as wd
import weft.exec
from conftest import wait_until, weft_segments
from weft.exec import _pool, _shm, _wire

SHM = _shm.SHM_DIR
pytestmark = pytest.mark.skipif(not _shm.supported(), reason="needs POSIX shared memory under /dev/shm")

ROW = (100, 200)  # float32: 80 KB, above the shared-memory threshold


@pytest.fixture(autouse=True, scope="module")
def _resource_tracker_running() -> None:
    """multiprocessing starts one resource-tracker process on the first spawn and keeps it
    for the life of the interpreter; start it up front so no_leaks does not count it."""
    multiprocessing.resource_tracker.ensure_running()


# -- functions the workers run (module level: workers import them by name) -----------------
def row(i: int) -> np.ndarray:
    return np.full(ROW, i, dtype=np.float32)


def sized(n_bytes: int) -> np.ndarray:
    return np.full(n_bytes // 8, n_bytes, dtype=np.float64)


def row_or_die(i: int, marker: str) -> np.ndarray:
    """Kill this worker the first time item 7 runs (the marker does not exist yet)."""
    if i == 7 and not os.path.exists(marker):
        Path(marker).write_text("died")
        os.kill(os.getpid(), signal.SIGKILL)
    return row(i)


# -- helpers ---------------------------------------------------------------------------
def pool_mappings() -> list[str]:
    """Lines of this process's memory map that are a weft pool of this owner."""
    with open("/proc/self/maps") as f:
        return [line for line in f if f"/weft-{os.getpid()}-" in line and "-pool" in line]


def in_pool(a: np.ndarray) -> bool:
    """Whether ``a`` views a result pool (its base is the allocation's own uint8 array over
    a memoryview), not a fresh segment (a float array over an mmap)."""
    base = a.base
    while isinstance(base, np.ndarray) and base.dtype != np.uint8:
        base = base.base
    return isinstance(base, np.ndarray) and isinstance(base.base, memoryview)


def assert_rows(batches: list[np.ndarray], first: int = 0) -> None:
    expected = first
    for b in batches:
        for r in b:
            assert r.shape == ROW and (r == expected).all(), f"row {expected} was overwritten"
            expected += 1


@pytest.fixture
def one_process_pool():  # type: ignore[no-untyped-def]
    """Both sides of one pool, mapped in this process."""
    worker = _pool.WorkerPool.create(os.getpid(), SHM, 2 * 1024 * 1024)
    assert worker is not None
    owner = _pool.OwnerPool.attach(os.path.join(SHM, worker.name), worker.nbytes)
    assert owner is not None
    assert not os.path.exists(os.path.join(SHM, worker.name)), "attaching unlinks the name"
    yield worker, owner
    owner.close()


def send(worker: _pool.WorkerPool, owner: _pool.OwnerPool, value: object) -> object:
    """Encode ``value`` as a worker would, after the releases the owner has queued, and
    decode it as the owner does."""
    worker.release(owner.take_released())
    payload = _wire.encode_outcome(_wire.Ok(value), owner=os.getpid(), use_shm=True, pool=worker)
    worker.release_unsent()
    outcome = _wire.decode_outcome(payload, owner)
    assert isinstance(outcome, _wire.Ok)
    return outcome.value


# -- the allocator ----------------------------------------------------------------------
def test_allocator_reuses_released_space_and_merges_neighbours() -> None:
    pool = _pool.WorkerPool.create(os.getpid(), SHM, 1024 * 1024)
    assert pool is not None
    os.unlink(os.path.join(SHM, pool.name))
    a, b, c = (pool.allocate(300 * 1024) for _ in range(3))
    assert (a, b, c) == (0, 300 * 1024, 600 * 1024)
    assert pool.allocate(300 * 1024) is None, "no room: the caller falls back, nothing waits"
    assert pool.allocate(2 * 1024 * 1024) is None, "larger than the pool"
    pool.release([b])
    pool.release([b, 12345])  # twice, and an unknown offset: ignored
    assert pool.allocate(200 * 1024) == b, "first fit"
    pool.release([a, c, b])
    assert pool.free_bytes == 1024 * 1024
    assert pool.allocate(1024 * 1024) == 0, "released neighbours merged back into one extent"
    assert pool.allocate(1) is None
    pool.release([0])
    assert [pool.allocate(1) for _ in range(3)] == [0, _pool.ALIGNMENT, 2 * _pool.ALIGNMENT]


def test_pool_size_is_bounded_by_free_shared_memory() -> None:
    st = os.statvfs(SHM)
    free = st.f_bavail * st.f_frsize
    for workers in (1, 2, 64):
        size = _pool.pool_bytes(workers, None, SHM)
        assert size <= _pool.DEFAULT_POOL_BYTES
        assert size * workers <= free // _pool.FREE_SHM_SHARE
    assert _pool.pool_bytes(2, 0, SHM) == 0
    assert _pool.pool_bytes(2, 3 * 1024 * 1024 + 5, SHM) == 3 * 1024 * 1024


def test_wire_carries_releases_and_the_pool_name() -> None:
    task = _wire.Task(7, b"payload", (0, 64, 2**40))
    assert _wire.decode_task(_wire.encode_task(task)) == task
    assert _wire.decode_task(_wire.encode_task(_wire.Task(8, b"p"))) == _wire.Task(8, b"p", ())
    ready = _wire.Ready("weft-1-2-pool", 64 * 1024 * 1024)
    assert _wire.decode_ready(_wire.encode_ready(ready)) == ready
    assert _wire.decode_ready(_wire.encode_ready(_wire.Ready())) == _wire.Ready()
    assert _wire.decode_ready(_wire.encode_answer(_wire.Answer(1, 0.0, 0.0, b""))) is None


# -- one pool in this process: what a view keeps alive --------------------------------------
def test_space_is_reused_only_after_every_view_of_it_is_gone(one_process_pool) -> None:  # type: ignore[no-untyped-def]
    worker, owner = one_process_pool
    first = send(worker, owner, row(1))
    assert in_pool(first)
    np.testing.assert_array_equal(first, row(1))
    view = first[10:50][5:7, 3:]  # a slice of a slice
    del first
    gc.collect()
    assert owner.take_released() == (), "a slice of a slice still views the space"
    second = send(worker, owner, row(2))
    assert (view == 1).all(), "a new result must not land on space a view still reads"
    del view
    gc.collect()
    released = owner.take_released()
    assert len(released) == 1
    worker.release(released)
    third = send(worker, owner, row(3))
    assert third.ctypes.data < second.ctypes.data, "the released space is reused first"
    assert (second == 2).all() and (third == 3).all()


def test_many_results_kept_alive_are_never_overwritten(one_process_pool) -> None:  # type: ignore[no-untyped-def]
    """Keep every third result, and every kind of derived view, across many more results
    than fit in the pool at once; release the others as they go. Every value stays."""
    try:
        import torch  # where it installs: a tensor from_numpy keeps the space too
    except ImportError:
        torch = None
    worker, owner = one_process_pool
    kept: list[tuple[int, object]] = []
    concatenated = []
    fallback = 0
    for i in range(120):
        a = send(worker, owner, row(i))
        fallback += not in_pool(a)
        if i % 3 == 0:
            derived: object = {0: a, 1: a[::2][1:][:, 5:9], 2: a.reshape(-1)[::7], 3: a.T}[i % 4]
            if torch is not None and i % 9 == 0:
                derived = torch.from_numpy(a[3:])
            kept.append((i, derived))
        elif i % 3 == 1:
            concatenated.append((i, np.concatenate([a[:50], a[50:]])))  # sources dropped at once
        del a  # the last reference to a dropped result: released at once (reference counting)
        if i % 20 == 19:
            gc.collect()  # now and then, not per result: a full collection with torch loaded costs ~0.1 s
    assert fallback, "the pool (2 MB) cannot hold 40 kept results of 80 KB: some fell back"
    assert fallback < 120, "the others went through the pool"
    for i, derived in kept:
        values = derived.numpy() if torch is not None and isinstance(derived, torch.Tensor) else derived
        assert (np.asarray(values) == i).all(), f"result {i} was overwritten"
    for i, c in concatenated:
        assert (c == i).all()
    del kept, concatenated, derived, values, c
    gc.collect()
    worker.release(owner.take_released())
    assert worker.free_bytes == worker.nbytes, "every allocation came back"


def test_a_result_buffer_is_sent_without_a_copy_and_released_if_unsent(one_process_pool) -> None:  # type: ignore[no-untyped-def]
    from weft.data._work import _packed

    worker, owner = one_process_pool
    stacked = _packed([row(i) for i in range(4)], allocate=worker.result_buffer)
    staged = worker.free_bytes
    assert staged == worker.nbytes - stacked.nbytes
    payload = _wire.encode_outcome(_wire.Ok(stacked), owner=os.getpid(), use_shm=True, pool=worker)
    assert worker.free_bytes == staged, "sent where it was stacked: no second copy"
    assert len(payload) < 1024
    worker.release_unsent()
    assert worker.free_bytes == staged, "a sent buffer is not released with the unsent ones"
    back = _wire.decode_outcome(payload, owner).value  # type: ignore[union-attr]
    assert_rows([back])
    unsent = _packed([row(i) for i in range(4)], allocate=worker.result_buffer)
    send(worker, owner, "something else")
    del unsent, back
    gc.collect()
    worker.release(owner.take_released())
    assert worker.free_bytes == worker.nbytes


def test_an_answer_nobody_reads_gives_its_space_back(one_process_pool) -> None:  # type: ignore[no-untyped-def]
    worker, owner = one_process_pool
    payload = _wire.encode_outcome(_wire.Ok([row(1), row(2)]), owner=os.getpid(), use_shm=True, pool=worker)
    assert worker.free_bytes < worker.nbytes
    _wire.discard(payload, owner)
    worker.release(owner.take_released())
    assert worker.free_bytes == worker.nbytes


# -- through worker processes ------------------------------------------------------------------
def test_results_come_through_the_pool_and_outlive_the_executor(no_leaks: None) -> None:
    with weft.exec.create("process", workers=2) as ex:
        ex.start()
        assert wait_until(lambda: ex.ready_workers == 2, timeout=60), "both workers announce their pools"
        results = list(ex.map(row, range(40)))
        assert all(in_pool(r) for r in results), "a worker gets work once it is ready, its pool mapped"
        stats = ex.statistics()
        assert (stats.pooled_arrays, stats.fresh_arrays) == (40, 0)
        assert stats.pooled_bytes == sum(r.nbytes for r in results) and stats.pooled_share == 1.0
        assert stats.result_pool_bytes > 0
        assert not [n for n in os.listdir(SHM) if n.endswith("-pool") and n.startswith(f"weft-{os.getpid()}-")]
    assert pool_mappings(), "arrays kept after close still view their pools"
    for i, r in enumerate(results):
        assert (r == i).all()
    del results, r
    gc.collect()
    assert not pool_mappings(), "the pools are unmapped with their last view"


def test_a_pipeline_keeps_batches_correct_across_many_chunks(no_leaks: None) -> None:
    pipe = wd.from_iterable(range(600)).map(row, workers=2, backend="process").batch(16)
    kept = list(pipe)
    assert len(kept) == 38
    assert_rows(kept)
    assert any(in_pool(b) for b in kept)
    extra = pipe.statistics().stages[1].extra
    assert extra["results pooled"] > 0 and extra["result pool MB"] > 0
    del kept
    gc.collect()
    assert not pool_mappings()


def test_a_full_pool_falls_back_to_fresh_segments(no_leaks: None) -> None:
    with weft.exec.create("process", workers=1, result_pool_bytes=1024 * 1024) as ex:
        results = [ex.submit(row, i).result(timeout=60) for i in range(30)]  # 2.4 MB kept
        assert in_pool(results[1]) and not in_pool(results[-1])
        big = ex.submit(sized, 3 * 1024 * 1024).result(timeout=60)  # larger than the pool
        assert not in_pool(big) and (big == 3 * 1024 * 1024).all()
        assert_rows([np.stack(results)])
        del results
        gc.collect()
        ex.submit(row, 0).result(timeout=60)  # carries the releases back
        again = ex.submit(row, 99).result(timeout=60)
        assert in_pool(again) and (again == 99).all(), "released space is used again"
        stats = ex.statistics()
        assert stats.fresh_arrays >= 2 and stats.pooled_arrays >= 2, "both ways are counted"
        assert stats.fresh_arrays + stats.pooled_arrays == 33
        assert 0 < stats.pooled_share < 1  # type: ignore[operator]
    del again, big
    gc.collect()
    assert not pool_mappings()


def test_pools_can_be_turned_off(no_leaks: None) -> None:
    with weft.exec.create("process", workers=1, result_pool_bytes=0) as ex:
        r = ex.submit(row, 5).result(timeout=60)
        stats = ex.statistics()
    assert (stats.result_pool_bytes, stats.pooled_arrays, stats.fresh_arrays, stats.pooled_share) == (0, 0, 1, 0.0)
    assert not in_pool(r) and (r == 5).all()
    assert not pool_mappings()


def test_an_early_break_leaves_nothing_behind(no_leaks: None) -> None:
    pipe = wd.from_iterable(range(2000)).map(row, workers=2, backend="process").batch(16)
    for batch in pipe:
        first = batch
        break
    assert_rows([first])
    del pipe, batch
    gc.collect()
    assert not weft_segments()
    del first
    gc.collect()
    assert not pool_mappings()


def test_a_worker_killed_mid_run_leaves_nothing_behind(tmp_path, no_leaks: None) -> None:  # type: ignore[no-untyped-def]
    import functools

    fn = functools.partial(row_or_die, marker=str(tmp_path / "died"))
    with weft.exec.create("process", workers=2, max_retries=1) as ex:
        results = list(ex.map(fn, range(40)))
        assert ex.statistics().worker_restarts == 1
    assert (tmp_path / "died").exists()
    for i, r in enumerate(results):
        assert (r == i).all()
    assert not weft_segments()
    del results, r
    gc.collect()
    assert not pool_mappings(), "the dead worker's pool mapping is gone with its arrays"
