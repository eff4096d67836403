"""How process workers start (weft.exec._start): what auto reads of the main script."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from weft import runtime
from weft.exec import _policy, _start
from weft.exec._auto import unmeasured_rule


def _main_from(monkeypatch: pytest.MonkeyPatch, path: Path | None, *, module_name: str | None = None) -> None:
    """Make ``__main__`` look like a script run from ``path`` (or ``python -m module_name``)."""
    main = types.ModuleType("__main__")
    if path is not None:
        main.__file__ = str(path)
    main.__spec__ = None
    if module_name is not None:
        main.__spec__ = types.SimpleNamespace(name=module_name, origin=str(path))  # type: ignore[assignment]
    monkeypatch.setitem(sys.modules, "__main__", main)
    _start._has_main_guard.cache_clear()


@pytest.mark.parametrize(("source", "guarded"), [
    ("import weft\nprint(1)\n", False),
    ("def main():\n    pass\n\nif __name__ == '__main__':\n    main()\n", True),
    ('if "__main__" == __name__:\n    pass\n', True),
    ("def f():\n    if __name__ == '__main__':\n        pass\n", False),  # not at the top level
    ("this is not python (\n", True),  # nothing known against it: workers are tried
])
def test_a_script_without_a_top_level_guard_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     source: str, guarded: bool) -> None:
    script = tmp_path / "train.py"
    script.write_text(source)
    _main_from(monkeypatch, script)
    assert _start.unguarded_main_script() == (None if guarded else str(script))
    _main_from(monkeypatch, script, module_name="train")  # python -m train
    assert _start.unguarded_main_script() == (None if guarded else str(script))


def test_no_script_to_read_is_not_unguarded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _main_from(monkeypatch, None)  # an interactive session, python -c
    assert _start.unguarded_main_script() is None
    _main_from(monkeypatch, tmp_path / "gone.py")  # deleted since it started
    assert _start.unguarded_main_script() is None
    command = tmp_path / "weft"  # an installed command (no .py)
    command.write_text("import sys\nsys.exit(0)\n")
    _main_from(monkeypatch, command)
    assert _start.unguarded_main_script() is None


@pytest.mark.skipif(not runtime.gil_enabled(), reason="with the GIL off auto picks threads before it reads the script")
def test_auto_picks_threads_for_an_unguarded_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text("print('top level')\n")
    if runtime.usable_cores() < 2:
        pytest.skip("one usable core: the interpreter rule picks threads first")
    _main_from(monkeypatch, script)
    choice = unmeasured_rule(len, workers=2)
    assert choice == _policy.unguarded_script(str(script))
    assert choice.backend == "thread" and "guard" in choice.reason and str(script) in choice.reason


def test_an_unguarded_script_runs_under_auto(tmp_path: Path) -> None:
    """A script without a main guard whose map would go to processes: auto runs it on
    threads instead of failing when its workers re-run the script."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import weft.data as wd\n"
        "def spin(n):\n"
        "    return sum(i * i for i in range(20_000 + n))\n"
        "pipe = wd.from_iterable(range(64)).map(spin, workers=2).batch(8)\n"
        "print(sum(len(b) for b in pipe))\n"
        "print([s.reason for s in pipe.statistics().stages if s.kind == 'map'][0])\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=100, env=env)
    assert out.returncode == 0, out.stderr
    count, reason = out.stdout.splitlines()[:2]
    assert count == "64"
    if runtime.gil_enabled() and runtime.usable_cores() >= 2:
        assert "guard" in reason, reason
