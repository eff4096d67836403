"""weft.runtime states facts; weft doctor prints them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from weft import runtime
from weft.errors import ConfigError


def test_usable_cores_is_positive_and_within_affinity() -> None:
    import os

    cores = runtime.usable_cores()
    assert 1 <= cores <= (os.cpu_count() or cores)


def test_cgroup_quota_is_read(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert runtime._cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert runtime._cgroup_cpu_limit(tmp_path) is None


def test_cgroup_v1_quota_is_read(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert runtime._cgroup_cpu_limit(tmp_path) == 0.5


@pytest.mark.parametrize(("workload", "gil", "cores", "backend"), [
    ("cpu", False, 8, "thread"), ("cpu", True, 8, "process"), ("cpu", True, 1, "thread"),
    ("native", True, 8, "thread"), ("io", True, 8, "thread"), ("io", False, 1, "thread"),
])
def test_choose_backend_rule(workload: runtime.Workload, gil: bool, cores: int, backend: str) -> None:
    choice = runtime.choose_backend(workload, gil=gil, cores=cores)
    assert choice.backend == backend
    assert choice.reason


def test_unknown_workload_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown workload 'gpu'"):
        runtime.choose_backend("gpu")  # type: ignore[arg-type]


def test_facts_match_the_interpreter() -> None:
    facts = runtime.facts(check_imports=False)
    assert facts.free_threaded_build == bool(__import__("sysconfig").get_config_var("Py_GIL_DISABLED"))
    assert facts.gil_enabled == runtime.gil_enabled()
    assert {c.workload for c in facts.backends} == {"cpu", "native", "io"}


def _all_weft_modules() -> list[str]:
    import pkgutil

    import weft

    return ["weft"] + sorted(m.name for m in pkgutil.walk_packages(weft.__path__, "weft.")
                        if not m.name.endswith("__main__"))  # __main__ runs the command


@pytest.mark.slow
@pytest.mark.skipif(not runtime.is_free_threaded_build(), reason="needs a free-threaded build")
def test_importing_every_weft_module_leaves_the_gil_off() -> None:
    check = runtime.check_gil_imports(tuple(_all_weft_modules()), timeout=110)
    assert check.free_threaded_build
    assert check.reenabled_by is None, f"importing {check.reenabled_by} re-enabled the GIL"
    assert not check.gil_enabled_after
    # optional dependencies (torch, ray, ...) may be absent; weft's own modules must import
    assert not {m for m in check.failed_imports if not _optional_module(m)}, check.failed_imports


def _optional_module(name: str) -> bool:
    """Modules that need an optional extra; they may fail to import where it is absent."""
    optional_markers = ("torch", "onnx", "ray", "numba", "tritonclient")
    return any(marker in name for marker in optional_markers)


def test_weft_doctor_json() -> None:
    out = subprocess.run([sys.executable, "-m", "weft", "doctor", "--json", "--no-check-imports"],
                         capture_output=True, text=True, timeout=60, check=True)
    data = json.loads(out.stdout)
    assert data["usable_cores"] >= 1
    assert data["gil_enabled"] == runtime.gil_enabled()
    assert [b["workload"] for b in data["backends"]] == ["cpu", "native", "io"]


def test_weft_doctor_table() -> None:
    out = subprocess.run([sys.executable, "-m", "weft", "doctor"], capture_output=True, text=True,
                         timeout=90, check=True)
    assert "usable cores" in out.stdout
    assert "CPU-bound Python" in out.stdout


def test_gil_check_on_a_missing_interpreter_names_it(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-python")
    with pytest.raises(ConfigError, match="no-python"):
        runtime.check_gil_imports(("json",), python=missing)


def test_weft_doctor_states_the_auto_rule_of_the_policy() -> None:
    from weft.exec._policy import describe_rule

    out = subprocess.run([sys.executable, "-m", "weft", "doctor", "--no-check-imports"],
                         capture_output=True, text=True, timeout=90, check=True, env=_wide_terminal())
    assert describe_rule() in " ".join(out.stdout.split())


def _wide_terminal() -> dict[str, str]:
    import os

    return {**os.environ, "COLUMNS": "400"}  # so rich does not wrap the sentence
