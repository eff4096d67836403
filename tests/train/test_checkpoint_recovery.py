"""What a checkpoint directory survives: an interpreter exiting with background saves
pending, a save that never finished, a deleted manifest, a corrupted latest checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import weft.train as wt
from weft.errors import CheckpointError

SRC = Path(__file__).resolve().parents[2] / "src"


def run_script(code: str, directory: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), str(directory)], capture_output=True,
                          text=True, timeout=100, env=env)


# The write of every save waits until the interpreter has begun to exit (an atexit hook
# registered after weft's, so it runs first, opens the gate): the saves are certainly
# still pending when the script's last line is done.
_GATED = """
    import atexit, sys, threading
    import numpy as np
    import weft.train as wt
    import weft.train._checkpoints as module

    exiting = threading.Event()
    atexit.register(exiting.set)
    real_write = module.write_safetensors

    def gated_write(f, *args, **kwargs):
        f.write(b"partial")  # a temporary file exists from here on
        f.flush()
        exiting.wait()
        {after_gate}
        f.seek(0)
        f.truncate()
        return real_write(f, *args, **kwargs)

    module.write_safetensors = gated_write
    ck = wt.Checkpoints(sys.argv[1], background=True, exit_timeout={exit_timeout})
    for step in range(3):
        ck.save(step, {{"w": np.full(1_000_000, step, np.float32)}})
    print("saved", flush=True)
"""


def test_background_saves_pending_at_exit_are_finished(tmp_path: Path) -> None:
    result = run_script(_GATED.format(after_gate="", exit_timeout=60.0), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "saved" in result.stdout and "Warning" not in result.stderr, result.stderr
    ckpt = wt.Checkpoints(tmp_path)
    assert [i.step for i in ckpt.checkpoints()] == [0, 1, 2], "every pending save was written at exit"
    np.testing.assert_array_equal(ckpt.restore().state["w"], np.full(1_000_000, 2, np.float32))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".weft-tmp-")]


def test_a_save_unfinished_at_exit_warns_and_its_temporary_file_goes_at_the_next_open(tmp_path: Path) -> None:
    # the write never finishes: exit_timeout=0 lets the exit go on at once
    result = run_script(_GATED.format(after_gate="threading.Event().wait()", exit_timeout=0.0), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "RuntimeWarning" in result.stderr and "step 0" in result.stderr and "is lost" in result.stderr, \
        result.stderr
    assert "Checkpoints.wait()" in result.stderr, "the warning says how to avoid it"
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".weft-tmp-")]
    assert len(leftovers) == 1, "the killed write left its temporary file"
    ckpt = wt.Checkpoints(tmp_path)  # opening the directory removes it: its writer is gone
    assert not leftovers[0].exists()
    assert ckpt.checkpoints() == []


def save_three(directory: Path) -> list[wt.CheckpointInfo]:
    ckpt = wt.Checkpoints(directory, keep_last=None)
    for step in (10, 20, 30):
        ckpt.save(step, {"w": np.full(100, step)}, metrics={"loss": 1 / step}, config={"lr": 0.5})
    return ckpt.checkpoints()


def test_a_deleted_manifest_is_rebuilt_from_the_files_that_verify(tmp_path: Path) -> None:
    infos = save_three(tmp_path)
    (tmp_path / "manifest.json").unlink()
    corrupted = infos[1].path
    data = bytearray(corrupted.read_bytes())
    data[-3] ^= 0x10  # a flipped bit in the data: the header still parses
    corrupted.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match=rf"manifest\.json is missing.*steps \[10, 30\].*{corrupted.name}"):
        ckpt = wt.Checkpoints(tmp_path, keep_last=None)
    assert [(i.step, i.sha256, i.size, dict(i.metrics), dict(i.config)) for i in ckpt.checkpoints()] == [
        (i.step, i.sha256, i.size, dict(i.metrics), dict(i.config)) for i in (infos[0], infos[2])]
    assert json.loads((tmp_path / "manifest.json").read_text())["checkpoints"][1]["step"] == 30, "written back"
    assert ckpt.restore().step == 30 and ckpt.restore(step=10).state["w"][0] == 10
    ckpt.save(40, {"w": np.zeros(1)})
    assert [i.step for i in ckpt.checkpoints()] == [10, 30, 40], "the next save keeps them"


def test_a_manifest_deleted_while_open_is_rebuilt_on_read(tmp_path: Path) -> None:
    infos = save_three(tmp_path)
    ckpt = wt.Checkpoints(tmp_path, keep_last=None)
    (tmp_path / "manifest.json").unlink()
    with pytest.warns(RuntimeWarning, match=r"manifest\.json is missing.*steps \[10, 20, 30\]"):
        listed = ckpt.checkpoints()
    assert [(i.step, i.sha256) for i in listed] == [(i.step, i.sha256) for i in infos]
    assert ckpt.restore().step == 30, "warned once"
    ckpt.save(40, {"w": np.zeros(1)})
    assert [i.step for i in ckpt.checkpoints()] == [10, 20, 30, 40]


def test_a_file_from_before_sha_names_is_checked_for_its_structure(tmp_path: Path) -> None:
    infos = save_three(tmp_path)
    (tmp_path / "manifest.json").unlink()
    old_name = infos[2].path.with_name("step-0000000030-0badcafe.safetensors")  # 8 random hex digits
    infos[2].path.rename(old_name)
    truncated = infos[1].path
    with open(truncated, "r+b") as f:
        f.truncate(truncated.stat().st_size - 8)
    with pytest.warns(RuntimeWarning, match=rf"steps \[10, 30\].*{truncated.name}"):
        ckpt = wt.Checkpoints(tmp_path, keep_last=None)
    assert ckpt.latest() is not None and ckpt.latest().path == old_name  # type: ignore[union-attr]
    assert ckpt.restore().state["w"][0] == 30


def test_every_checkpoint_failing_to_load_is_one_error_naming_them(tmp_path: Path) -> None:
    infos = save_three(tmp_path)
    for info in infos:
        info.path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=rf"no checkpoint in .* loads: .*{infos[2].path.name}.*"
                                              rf"{infos[0].path.name}"):
        wt.Checkpoints(tmp_path).restore()


def test_saving_the_same_bytes_again_keeps_the_file(tmp_path: Path) -> None:
    ckpt = wt.Checkpoints(tmp_path)
    first = ckpt.save(1, {"w": np.ones(3)}).info
    again = ckpt.save(1, {"w": np.ones(3)}).info
    assert again.path == first.path and again.path.exists()
    assert ckpt.restore().state["w"].tolist() == [1, 1, 1]
