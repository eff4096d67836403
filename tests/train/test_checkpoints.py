"""Checkpoints: retention, restore, integrity, background saves, torch interop."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

import weft.train as wt
from conftest import weft_threads
from train_workloads import check_state, state_for
from weft.errors import CheckpointError, ConfigError


def test_save_restore_latest_list_and_metadata(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ckpt = wt.Checkpoints(tmp_path, keep_last=3)
    assert ckpt.latest() is None and ckpt.checkpoints() == []
    with pytest.raises(CheckpointError, match="no checkpoint"):
        ckpt.restore()
    for step in range(5):
        saved = ckpt.save(step, state_for(step), metrics={"loss": 1.0 / (step + 1)}, config={"lr": 0.1})
        assert isinstance(saved, wt.CheckpointSave) and saved.done() and saved.step == step
        assert isinstance(saved.info, wt.CheckpointInfo) and saved.info.step == step
        assert saved.result() is saved.info and saved.exception() is None
    assert [i.step for i in ckpt.checkpoints()] == [2, 3, 4]
    latest = ckpt.latest()
    assert latest is not None and latest.step == 4
    restored = ckpt.restore()
    assert restored.step == 4 and restored.metrics == {"loss": 0.2} and restored.config == {"lr": 0.1}
    check_state(4, restored.state)
    check_state(2, ckpt.restore(step=2).state)
    with pytest.raises(CheckpointError, match="no checkpoint for step 0"):
        ckpt.restore(step=0)
    files = sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".safetensors")
    assert len(files) == 3, "retention deletes the files it dropped"
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert all(len(e["sha256"]) == 64 for e in manifest["checkpoints"])
    s = ckpt.statistics()
    assert s.saves == 5 and s.restores == 2 and s.removed == 2 and s.pending == 0


def test_keep_best_by_metric(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ckpt = wt.Checkpoints(tmp_path, keep_last=1, keep_best=2, metric="acc", mode="max")
    accs = [0.1, 0.9, 0.3, 0.8, 0.2, 0.5]
    for step, acc in enumerate(accs):
        ckpt.save(step, {"x": np.array([step])}, metrics={"acc": acc})
    assert [i.step for i in ckpt.checkpoints()] == [1, 3, 5]
    best = ckpt.best()
    assert best is not None and best.step == 1


def test_saving_a_step_again_replaces_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ckpt = wt.Checkpoints(tmp_path, keep_last=None)
    ckpt.save(1, {"x": np.array([1])})
    ckpt.save(1, {"x": np.array([2])})
    assert [i.step for i in ckpt.checkpoints()] == [1]
    assert ckpt.restore().state["x"][0] == 2
    assert len(list(tmp_path.glob("*.safetensors"))) == 1


def test_corrupted_and_truncated_files_are_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ckpt = wt.Checkpoints(tmp_path, keep_last=None)
    for step in range(3):
        ckpt.save(step, state_for(step))
    infos = ckpt.checkpoints()
    corrupted, truncated = infos[2].path, infos[1].path
    data = bytearray(corrupted.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit in the middle of the data
    corrupted.write_bytes(bytes(data))
    with open(truncated, "r+b") as f:
        f.truncate(truncated.stat().st_size - 100)
    with pytest.raises(CheckpointError, match=corrupted.name) as info:
        ckpt.restore(step=2)
    assert "sha256" in str(info.value)
    with pytest.raises(CheckpointError, match=truncated.name):
        ckpt.restore(step=1)
    with pytest.warns(RuntimeWarning, match=rf"restored step 0.*{corrupted.name}.*{truncated.name}"):
        fallback = ckpt.restore()  # the latest does not verify: the newest one that does
    assert fallback.step == 0
    check_state(0, fallback.state)
    check_state(0, ckpt.restore(step=0).state)  # the others still load
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"manifest\.json"):
        ckpt.restore()


def test_missing_file_is_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ckpt = wt.Checkpoints(tmp_path)
    info = ckpt.save(0, {"x": np.zeros(3)}).info
    info.path.unlink()
    with pytest.raises(CheckpointError, match=info.path.name):
        ckpt.restore()


def test_background_saves_copy_then_write_in_order(tmp_path, no_leaks: None) -> None:  # type: ignore[no-untyped-def]
    threads_before = weft_threads()
    with wt.Checkpoints(tmp_path, keep_last=None, background=True) as ckpt:
        state = {"w": np.zeros(1000, np.float32)}
        handles = []
        for step in range(5):
            state["w"][:] = step
            handles.append(ckpt.save(step, state))
            state["w"][:] = -1  # mutating after save() returns must not reach the file
        ckpt.wait()
        assert all(h.done() for h in handles)
        assert [h.info.step for h in handles] == [0, 1, 2, 3, 4]
        for step in range(5):
            np.testing.assert_array_equal(ckpt.restore(step=step).state["w"], np.full(1000, step, np.float32))
        assert ckpt.statistics().saves == 5 and ckpt.statistics().pending == 0
    # close() returns once its writer thread has ended: no wait here (no_leaks would wait).
    # Only this test's threads: another test's leak is that test's failure.
    assert not (weft_threads() - threads_before)


def test_background_failure_is_raised_by_wait(tmp_path, no_leaks: None) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    ckpt = wt.Checkpoints(blocker / "sub", background=True)
    try:
        saved = ckpt.save(0, {"x": np.zeros(2)})
        with pytest.raises(CheckpointError, match="background checkpoint save") as info:
            saved.result()
        assert isinstance(info.value.__cause__, OSError), "the original error is the cause"
        assert isinstance(saved.exception(), CheckpointError)
        with pytest.raises(CheckpointError, match="background checkpoint save"):
            ckpt.wait()
    finally:
        ckpt.close()


def test_garbage_from_a_killed_save_is_removed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ckpt = wt.Checkpoints(tmp_path, keep_last=None)
    ckpt.save(0, {"x": np.zeros(2)})
    orphan = tmp_path / "step-0000000001-deadbeef.safetensors"
    orphan.write_bytes(b"half written")
    tmp = tmp_path / ".weft-tmp-step-0000000002-cafe.safetensors.999999999.1"  # pid 999999999 is gone
    tmp.write_bytes(b"partial")
    fresh = wt.Checkpoints(tmp_path, keep_last=None)
    assert [i.step for i in fresh.checkpoints()] == [0], "files not in the manifest are never listed"
    fresh.save(3, {"x": np.ones(2)})
    assert not orphan.exists() and not tmp.exists()


def test_save_returns_one_type_in_both_modes_and_waits_with_a_timeout(
        tmp_path, monkeypatch: pytest.MonkeyPatch, no_leaks: None) -> None:  # type: ignore[no-untyped-def]
    import weft.train._checkpoints as module

    entered, release = threading.Event(), threading.Event()
    real_write = module.write_safetensors

    def gated_write(*args, **kwargs):  # type: ignore[no-untyped-def]
        entered.set()
        assert release.wait(60), "the test never released the write"
        return real_write(*args, **kwargs)

    with wt.Checkpoints(tmp_path, keep_last=None) as ckpt:
        direct = ckpt.save(0, {"x": np.zeros(2)})
        monkeypatch.setattr(module, "write_safetensors", gated_write)
        pending = ckpt.save(1, {"x": np.ones(2)}, background=True)
        assert type(direct) is type(pending) is wt.CheckpointSave
        assert entered.wait(60)
        assert not pending.done() and pending.step == 1 and "pending" in repr(pending)
        assert ckpt.statistics().pending == 1
        with pytest.raises(CheckpointError, match=r"still being written after 0\.0 s"):
            pending.result(timeout=0.0)
        with pytest.raises(CheckpointError, match="still being written"):
            pending.exception(timeout=0.0)
        release.set()
        assert pending.result(timeout=60).step == 1 and pending.exception() is None
        assert [i.step for i in ckpt.checkpoints()] == [0, 1]


def test_deprecated_names_still_work_and_warn(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ckpt = wt.Checkpoints(tmp_path)
    saved = ckpt.save(3, {"x": np.zeros(2)})
    with pytest.warns(DeprecationWarning, match=r"Checkpoints\.checkpoints\(\)"):
        listed = ckpt.list()
    assert listed == ckpt.checkpoints()
    with pytest.warns(DeprecationWarning, match=r"\.info\.path"):
        path = saved.path  # type: ignore[attr-defined]
    assert path == saved.info.path and path.exists()
    with pytest.warns(DeprecationWarning):
        assert saved.sha256 == saved.info.sha256  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        saved.nothing  # type: ignore[attr-defined]  # noqa: B018


def test_a_live_writers_temporary_file_is_kept_and_unnamed_files_go(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os

    first = wt.Checkpoints(tmp_path, keep_last=None)
    first.save(0, {"x": np.zeros(2)})
    live = os.getppid()  # alive for as long as this test runs, and not this process
    in_progress = tmp_path / f".weft-tmp-step-0000000009-0badcafe.safetensors.{live}.1"
    in_progress.write_bytes(b"another process is still writing this")
    orphan = tmp_path / "step-0000000001-deadbeef.safetensors"  # renamed, but its manifest never came
    orphan.write_bytes(b"left by a killed save")
    wt.Checkpoints(tmp_path, keep_last=None).save(2, {"x": np.ones(2)})
    assert in_progress.exists(), "a temporary file of a live process is its work in progress"
    assert not orphan.exists(), "files are renamed into place only under the lock: an unnamed one is garbage"


def test_two_writers_of_one_directory_lose_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def writer(first_step: int) -> None:
        try:
            ckpt = wt.Checkpoints(tmp_path, keep_last=None, durable=False)  # its own store, lock and cleanup
            barrier.wait()
            for step in range(first_step, first_step + 20, 2):
                ckpt.save(step, {"x": np.full(3, step)})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(start,)) for start in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ckpt = wt.Checkpoints(tmp_path, keep_last=None)
    assert [i.step for i in ckpt.checkpoints()] == list(range(20))
    for info in ckpt.checkpoints():
        assert ckpt.restore(step=info.step).state["x"][0] == info.step


def test_bad_arguments(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="keep_last"):
        wt.Checkpoints(tmp_path, keep_last=0)
    with pytest.raises(ConfigError, match="keep_best"):
        wt.Checkpoints(tmp_path, keep_best=-1)
    with pytest.raises(ConfigError, match="metric"):
        wt.Checkpoints(tmp_path, keep_best=2)
    with pytest.raises(ConfigError, match="mode"):
        wt.Checkpoints(tmp_path, mode="up")  # type: ignore[arg-type]
    ckpt = wt.Checkpoints(tmp_path)
    with pytest.raises(ConfigError, match="step"):
        ckpt.save(-1, {"x": np.zeros(1)})
    with pytest.raises(ConfigError, match="framework"):
        ckpt.restore(framework="jax")  # type: ignore[arg-type]
    assert ckpt.save(np.int64(4), {"x": np.zeros(1)}).step == 4, "NumPy integers are steps too"
    with pytest.raises(ConfigError, match="'x/1' is a object"):
        ckpt.save(0, {"x": [1, object()]})
    with pytest.raises(ConfigError, match="state must be a mapping"):
        ckpt.save(0, [np.zeros(1)])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="JSON"):
        ckpt.save(0, {"x": np.zeros(1)}, config={"f": object()})


def test_torch_tensors_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    torch = pytest.importorskip("torch", reason="torch is not installed on this interpreter")
    ckpt = wt.Checkpoints(tmp_path)
    state = {"w": torch.randn(4, 3), "half": torch.ones(2, dtype=torch.bfloat16) * 1.5,
             "n": torch.arange(5)}
    ckpt.save(7, state)
    back = ckpt.restore(framework="torch").state
    for k, v in state.items():
        assert back[k].dtype == v.dtype
        assert torch.equal(back[k], v)
    with pytest.raises(ConfigError, match="bfloat16"):
        ckpt.restore()
    st_torch = pytest.importorskip("safetensors.torch", reason="the safetensors package is not installed here")
    theirs = st_torch.load_file(str(ckpt.latest().path))  # type: ignore[union-attr]
    assert torch.equal(theirs["half"], state["half"])


def test_large_state_hashes_beside_the_io(tmp_path, no_leaks: None) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    big = {"w": np.arange(5_000_000, dtype=np.float32), "b": np.ones(3, np.int8)}  # 20 MB: hashed on a worker
    ckpt = wt.Checkpoints(tmp_path)
    info = ckpt.save(1, big).info
    assert info.sha256 == hashlib.sha256(info.path.read_bytes()).hexdigest(), "a plain sha256 of the file"
    np.testing.assert_array_equal(ckpt.restore().state["w"], big["w"])
    with open(info.path, "r+b") as f:
        f.seek(info.size - 1_000_000)
        f.write(b"\x00")
    with pytest.raises(CheckpointError, match=info.path.name):
        ckpt.restore()
