"""Every experiment runs (smoke sizes) in a fresh subprocess of this interpreter and returns a
well-formed result; skips only for a stated reason that fits this interpreter. Running every
experiment takes a while: those runs are marked slow."""

from __future__ import annotations

import importlib.util
import math
import sys
import sysconfig

import pytest

from weft import runtime
from weft.lab import Claim, available_experiments, judge
from weft.lab._lab import evaluate, plan, run_raw
from weft.lab._registry import load

MEASURED, DERIVED = plan()
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
HAS_NUMPY = importlib.util.find_spec("numpy") is not None
HAS_NUMBA = importlib.util.find_spec("numba") is not None


def _expected_skip(name: str) -> str | None:
    """Why ``name`` may skip on this interpreter, or None when it must run."""
    if name == "threads_gil" and FREE_THREADED:
        return "GIL is off"
    if name == "threads_free" and not FREE_THREADED:
        return "not a free-threaded build"
    if name == "jit":
        return "not measurable here"  # only when the interpreter has no JIT; checked below
    if name.startswith("numba_") and not HAS_NUMBA:
        return "numba is not installed" if HAS_NUMPY else "NumPy is not installed"
    if name in {"numpy_sum", "broadcasting", "inplace", "mmap_load", "queue_vs_shm"} and not HAS_NUMPY:
        return "NumPy is not installed"
    return None


def test_the_required_experiments_exist() -> None:
    required = {"threads_gil", "threads_free", "ft_single_thread", "processes", "threads_vs_processes", "jit", "listcomp",
                "local_lookup", "from_import", "numpy_sum", "broadcasting", "generator_memory",
                "lru_cache", "numba_njit", "numba_parallel", "inplace", "queue_vs_shm",
                "async_waits", "mmap_load", "z85", "membership"}
    assert required <= set(available_experiments())


@pytest.mark.parametrize("name", available_experiments())
def test_every_module_states_a_claim(name: str) -> None:
    claim = load(name).CLAIM
    assert isinstance(claim, Claim) and claim.name == name
    assert claim.text.endswith(".") and claim.source and claim.group
    assert claim.baseline in claim.expected and claim.candidate in claim.expected


def test_every_experiment_is_measured_or_derived() -> None:
    assert sorted(MEASURED + DERIVED) == available_experiments()
    assert all(hasattr(load(n), "combine") for n in DERIVED)
    assert not any(hasattr(load(n), "combine") for n in MEASURED)


@pytest.mark.slow
@pytest.mark.parametrize("name", MEASURED)
def test_experiment_runs_and_is_well_formed(name: str) -> None:
    raw = run_raw(sys.executable, name, "smoke")
    assert raw["name"] == name and raw["mode"] == "smoke"
    assert raw["interpreter"]["executable"] and raw["interpreter"]["version"]
    assert raw["interpreter"]["free_threaded"] is FREE_THREADED
    # the child imported weft.runtime from the source the lab put on its path
    assert raw["interpreter"]["usable_cores"] == runtime.usable_cores()
    assert raw["interpreter"]["gil_enabled"] is runtime.gil_enabled()
    assert raw["status"] in ("ok", "skipped"), raw["reason"]
    claim = load(name).CLAIM
    expected_skip = _expected_skip(name)
    if raw["status"] == "skipped":
        assert expected_skip is not None, f"{name} skipped but must run here: {raw['reason']}"
        assert expected_skip in raw["reason"]
        assert raw["samples"] == {}
        return
    if name == "jit":
        assert raw["interpreter"]["jit_available"]
    elif expected_skip is not None and name != "jit":
        pytest.fail(f"{name} ran but was expected to skip ({expected_skip})")
    samples = raw["samples"]
    assert {claim.baseline, claim.candidate} <= set(samples)
    for variant, values in samples.items():
        assert values and all(math.isfinite(v) and v >= 0 for v in values), (variant, values)
        assert raw["units"][variant] == ("bytes" if claim.metric == "bytes" else "s")
    result = evaluate(claim, raw, raw["interpreter"]["label"])
    assert result.verdict is not None
    assert result.verdict.kind in ("holds", "does not hold", "inconclusive")
    assert result.verdict.low <= result.verdict.ratio <= result.verdict.high
    # the verdict is exactly judge() on the recorded samples
    again = judge(samples[claim.baseline], samples[claim.candidate],
                  threshold=raw["threshold"] or claim.threshold, direction=claim.direction)
    assert again == result.verdict


def test_a_failing_interpreter_is_reported_not_raised() -> None:
    raw = run_raw(sys.executable, "listcomp", "smoke", timeout=0.001)
    assert raw["status"] == "error" and "timed out" in raw["reason"]
