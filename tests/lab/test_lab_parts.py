"""The lab's parts on synthetic inputs: context, registry, combine, z85, discovery."""

from __future__ import annotations

import base64
import os
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from weft import runtime
from weft.errors import ConfigError, LabError
from weft.lab import Claim, LabConfig
from weft.lab._context import Context, Skip
from weft.lab._interpreters import discover, find_free_threaded, probe
from weft.lab._lab import evaluate, plan
from weft.lab._registry import load
from weft.lab.experiments import ft_single_thread, jit, z85


def test_context_times_every_variant_interleaved() -> None:
    calls: list[str] = []
    ctx = Context("smoke")
    ctx.time({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmups=1)
    # warm-ups first (a, b), then a b a b a b
    assert calls == ["a", "b"] + ["a", "b"] * 3
    assert [len(ctx.samples[k]) for k in ("a", "b")] == [3, 3]
    assert ctx.units == {"a": "s", "b": "s"}


def test_context_modes_and_skip() -> None:
    assert Context("quick").pick(full=3, quick=2, smoke=1) == 2
    assert Context("full").repeats > Context("quick").repeats > Context("smoke").repeats
    with pytest.raises(ConfigError, match=r"mode must be one of .* got 'huge'"):
        Context("huge")  # type: ignore[arg-type]
    with pytest.raises(Skip, match="why"):
        Context("smoke").skip("why")
    ctx = Context("smoke")
    ctx.set_threshold(1.4, "scaled")
    assert ctx.threshold == 1.4 and ctx.notes == ["scaled"]
    with pytest.raises(ConfigError, match=r"threshold must be a ratio > 0, got 0\.0"):
        ctx.set_threshold(0.0, "no")
    assert ctx.cores == runtime.usable_cores()


def test_lab_errors_are_weft_errors() -> None:
    assert issubclass(Skip, LabError)  # an experiment that cannot be measured here
    with pytest.raises(LabError, match=r"'z85' reported status 'ok' without samples for \['base64'\]"):
        evaluate(z85.CLAIM, {"status": "ok", "samples": {"z85": [1.0]}}, "3.13.1")
    with pytest.raises(ConfigError, match="variant 'a' has no samples"):
        Context("smoke").record("a", [])
    fields = dict(group="g", text="t.", source="s", baseline="a", candidate="b", threshold=1.1)
    with pytest.raises(ConfigError, match="identifier"):
        Claim(name="not a name", **fields)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="threshold must be > 0"):
        Claim(name="c", **{**fields, "threshold": 0})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="both 'a'"):
        Claim(name="c", **{**fields, "candidate": "a"})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="direction must be"):
        Claim(name="c", direction="up", **fields)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="metric must be"):
        Claim(name="c", metric="joules", **fields)  # type: ignore[arg-type]


def test_unknown_experiment_is_a_config_error_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="listcomp"):
        load("no_such_experiment")
    with pytest.raises(ConfigError, match="no_such_experiment"):
        LabConfig(only=("no_such_experiment",))
    with pytest.raises(ConfigError, match="mode"):
        LabConfig(mode="huge")  # type: ignore[arg-type]


def test_plan_adds_what_derived_experiments_need() -> None:
    measured, derived = plan(("ft_single_thread", "z85"))
    assert derived == ["ft_single_thread"]
    assert set(measured) == {"z85", "threads_gil", "threads_free"}


def _raw(name: str, label: str, version: str, serial: list[float], status: str = "ok") -> dict[str, Any]:
    return {"name": name, "status": status, "reason": "", "params": {"workers": 2},
            "samples": {"serial": serial, "threads": serial} if status == "ok" else {},
            "interpreter": {"label": label, "version": version}}


def test_single_thread_cost_combines_both_interpreters() -> None:
    runs = [_raw("threads_gil", "3.13.1", "3.13.1", [1.0, 1.0, 1.0]),
            _raw("threads_free", "3.13.1t", "3.13.1", [1.25, 1.25, 1.25])]
    (combined,) = ft_single_thread.combine(runs)
    assert combined["interpreters"] == ["3.13.1", "3.13.1t"]
    assert combined["notes"] == []  # same version: like for like
    result = evaluate(ft_single_thread.CLAIM, combined, "3.13.1 vs 3.13.1t")
    assert result.verdict is not None
    assert result.verdict.ratio == pytest.approx(0.8)
    assert result.verdict.kind == "does not hold"  # 25% slower is not within 10%


def test_single_thread_cost_notes_version_mismatch_and_skips_without_a_pair() -> None:
    runs = [_raw("threads_gil", "3.11.7", "3.11.7", [1.0]),
            _raw("threads_free", "3.13.15t", "3.13.15", [1.02])]
    (combined,) = ft_single_thread.combine(runs)
    assert "version difference" in combined["notes"][0]
    (skipped,) = ft_single_thread.combine(runs[:1] + [_raw("threads_free", "3.13.15", "3.13.15", [], "skipped")])
    assert skipped["status"] == "skipped" and "free-threaded" in skipped["reason"]
    assert evaluate(ft_single_thread.CLAIM, skipped, "-").verdict is None


def test_z85_matches_the_rfc_vector_and_the_stdlib() -> None:
    assert z85.z85encode(bytes([0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B])) == b"HelloWorld"
    data = os.urandom(1000)
    assert len(z85.z85encode(data)) == 1250
    stdlib = getattr(base64, "z85encode", None)
    if stdlib is not None:
        assert z85.z85encode(data) == stdlib(data)
        assert z85.z85encode(b"abc") == stdlib(b"abc")  # both pad to a multiple of 4


def test_jit_child_reports_timings_even_without_a_jit() -> None:
    # PYTHON_JIT is ignored by interpreters without a JIT; the mechanics are the same.
    samples = jit.child_samples(sys.executable, "0", 1000, 0, 2)
    assert len(samples) == 2 and all(s > 0 for s in samples)


def test_probe_and_discovery(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    me = probe(sys.executable, "test")
    assert me.free_threaded == bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    assert me.label.startswith(f"{sys.version_info[0]}.{sys.version_info[1]}.")
    with pytest.raises(ConfigError, match="cannot run"):
        probe(str(tmp_path / "missing-python"), "--python")
    # explicit interpreters are used as given, duplicates removed
    assert [i.path for i in discover([sys.executable, sys.executable])] == [sys.executable]
    monkeypatch.setenv("WEFT_FT_PYTHON", sys.executable)
    assert find_free_threaded(tmp_path) == (sys.executable, "WEFT_FT_PYTHON")
    found = discover(cwd=tmp_path)
    assert found[0].found_by == "current interpreter"
    if not me.free_threaded:  # the named "free-threaded" one is this same path: deduplicated
        assert len(found) == 1


def test_locator_script_is_used_when_nothing_else_is(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    monkeypatch.delenv("WEFT_FT_PYTHON", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    tools = tmp_path / "shared" / "tools"
    tools.mkdir(parents=True)
    locator = tools / "ft-python"
    locator.write_text(f"#!/bin/sh\necho {sys.executable}\n")
    locator.chmod(0o755)
    cwd = tmp_path / "main"
    cwd.mkdir()
    assert find_free_threaded(cwd) == (sys.executable, str(Path("..") / "shared" / "tools" / "ft-python"))
    assert find_free_threaded(tmp_path) is None


def test_context_measures_cores_used_by_threads() -> None:
    import threading

    from weft.lab.experiments._work import cpu_work

    ctx = Context("smoke")
    barrier = threading.Barrier(2)

    def two_threads() -> None:
        def work() -> None:
            barrier.wait()
            cpu_work(20_000)
        threads = [threading.Thread(target=work) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    ctx.time({"serial": lambda: cpu_work(20_000), "threads": two_threads}, repeats=3, warmups=0)
    # CPU seconds per wall second: positive and bounded by the threads that ran (+ slack)
    assert 0 < ctx.cores_used("serial") <= 1.5
    assert 0 < ctx.cores_used("threads") <= 2.5
    assert ctx.cores_used("missing") == 0.0


def test_single_thread_cost_notes_different_optimisation() -> None:
    gil = _raw("threads_gil", "3.13.1", "3.13.1", [1.0])
    free = _raw("threads_free", "3.13.1t", "3.13.1", [1.1])
    gil["interpreter"].update(pgo=True, lto=True)
    free["interpreter"].update(pgo=False, lto=False)
    (combined,) = ft_single_thread.combine([gil, free])
    assert len(combined["notes"]) == 1 and "PGO/LTO" in combined["notes"][0]
