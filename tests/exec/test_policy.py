"""The backend rule itself (weft.exec._policy): every branch, its reasons and its figures.

Pure decisions on stated inputs: nothing here measures this machine.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator

import pytest

import weft.exec
import workloads
from weft import runtime
from weft.errors import ConfigError
from weft.exec import _policy
from weft.exec._policy import BackendChoice


def test_gil_off_means_threads_whatever_the_cores() -> None:
    for workers, cores in ((1, 1), (8, 1), (8, 8)):
        choice = _policy.interpreter_rule(workers, gil=False, cores=cores)
        assert choice is not None and choice.backend == "thread"
        assert "GIL is off" in choice.reason


@pytest.mark.parametrize(("workers", "cores"), [(1, 8), (8, 1), (1, 1)])
def test_one_core_or_worker_means_threads(workers: int, cores: int) -> None:
    choice = _policy.interpreter_rule(workers, gil=True, cores=cores)
    assert choice is not None and choice.backend == "thread"
    assert "one usable core or worker" in choice.reason


def test_several_cores_and_workers_on_a_gil_build_need_a_measurement() -> None:
    assert _policy.interpreter_rule(2, gil=True, cores=2) is None


def test_interpreter_rule_defaults_to_this_interpreter() -> None:
    choice = _policy.interpreter_rule(2)
    if not runtime.gil_enabled():
        assert choice is not None and "GIL is off" in choice.reason
    elif runtime.usable_cores() < 2:
        assert choice is not None and "one usable core" in choice.reason
    else:
        assert choice is None


@pytest.mark.parametrize(("workload", "gil", "cores", "backend", "words"), [
    ("cpu", True, 4, "process", "the GIL serialises Python bytecode"),
    ("cpu", True, 1, "thread", "one usable core"),
    ("cpu", False, 4, "thread", "GIL is off"),
    ("native", True, 4, "thread", "native code releases the GIL"),
    ("native", False, 4, "thread", "GIL is off"),
    ("io", True, 1, "thread", "blocking I/O"),
    ("io", False, 4, "thread", "GIL is off"),
])
def test_for_workload(workload: _policy.Workload, gil: bool, cores: int, backend: str, words: str) -> None:
    choice = _policy.for_workload(workload, gil=gil, cores=cores)
    assert (choice.backend, choice.workload) == (backend, workload)
    assert words in choice.reason


def test_unknown_workload_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown workload 'gpu': use one of \['cpu', 'io', 'native'\]"):
        _policy.for_workload("gpu")  # type: ignore[arg-type]


def test_for_model_chooses_for_each_model_alone() -> None:
    assert _policy.for_model("a", False, gil=False).backend == "thread"
    assert _policy.for_model("a", True, gil=False).backend == "thread"
    held = _policy.for_model("a", False, gil=True)
    assert held.backend == "process" and "model 'a' does not declare releases_gil" in held.reason
    released = _policy.for_model("b", True, gil=True)
    assert released.backend == "thread" and "model 'b' releases the GIL" in released.reason


def test_unpicklable_functions_get_threads_and_the_reason() -> None:
    with pytest.raises(Exception) as info:
        pickle.dumps(lambda: None)
    choice = _policy.unpicklable(info.value)
    assert choice.backend == "thread"
    assert f"cannot be pickled ({type(info.value).__name__})" in choice.reason
    assert "module level" in choice.reason


def test_too_few_items_and_unmeasured() -> None:
    assert _policy.too_few_items(items=0).reason == "no items to measure: threads"
    assert _policy.too_few_items(items=3).reason == "too few items to measure: threads"
    after_serial = _policy.too_few_items(items=5, seconds_per_call=0.01)
    assert after_serial.backend == "thread" and after_serial.serial_seconds_per_item == 0.01
    assert "measure threads" in after_serial.reason
    unmeasured = _policy.unmeasured()
    assert unmeasured.backend == "process" and "no sample" in unmeasured.reason


def test_short_calls_stay_on_threads() -> None:
    seconds = _policy.MIN_PROCESS_SECONDS_PER_CALL / 2
    choice = _policy.after_serial_calls(seconds, cpu_share=1.0)
    assert choice is not None and choice.backend == "thread"
    assert choice.reason == "calls take 25 us: too short to repay sending them to processes"
    assert choice.serial_seconds_per_item == seconds


def test_a_map_stages_items_repay_processes_from_a_lower_bound() -> None:
    """Items sent in chunks pay the process round trip once per chunk, not per item."""
    assert _policy.MIN_PROCESS_SECONDS_PER_CHUNKED_ITEM < _policy.MIN_PROCESS_SECONDS_PER_CALL / 5
    seconds = 20e-6  # the record parser of the load benchmark takes about this
    assert _policy.after_serial_calls(seconds, cpu_share=1.0) is not None, "a single call: too short"
    assert _policy.after_serial_calls(seconds, cpu_share=1.0, chunked=True) is None


def test_waiting_calls_stay_on_threads() -> None:
    choice = _policy.after_serial_calls(0.01, cpu_share=_policy.WAITING_CPU_SHARE - 0.2)
    assert choice is not None and choice.backend == "thread"
    assert choice.reason == "calls spend 70% of their time waiting (I/O): threads overlap the waits"


def test_long_computing_calls_need_a_thread_trial() -> None:
    assert _policy.after_serial_calls(0.01, cpu_share=_policy.WAITING_CPU_SHARE) is None
    assert _policy.after_serial_calls(_policy.MIN_PROCESS_SECONDS_PER_CALL, cpu_share=1.0) is None


def test_a_passing_thread_trial_means_threads() -> None:
    choice = _policy.after_thread_trial(seconds_per_call=0.01, cores_used=1.9, cores=2, efficiency=0.9,
                                        final=False)
    assert choice is not None and choice.backend == "thread"
    assert choice.reason == ("threads used 1.9 of 2 cores (90% parallel efficiency): the function releases "
                             "the GIL, so threads run it in parallel")
    assert (choice.cores_used, choice.thread_efficiency, choice.serial_seconds_per_item) == (1.9, 0.9, 0.01)


@pytest.mark.parametrize(("cores_used", "efficiency"), [(1.0, 0.95), (1.9, 0.3), (1.0, 0.3)])
def test_a_failing_thread_trial_is_retried_then_means_processes(cores_used: float, efficiency: float) -> None:
    figures = dict(seconds_per_call=0.01, cores_used=cores_used, cores=2, efficiency=efficiency)
    assert _policy.after_thread_trial(**figures, final=False) is None  # type: ignore[arg-type]
    choice = _policy.after_thread_trial(**figures, final=True)  # type: ignore[arg-type]
    assert choice is not None and choice.backend == "process"
    assert "holds the GIL, so processes run it in parallel" in choice.reason


def test_the_bar_is_every_core_when_fewer_than_the_threshold() -> None:
    # With one core to use, one core's worth of CPU is all a GIL-releasing call can show.
    choice = _policy.after_thread_trial(seconds_per_call=0.01, cores_used=1.0, cores=1, efficiency=0.8,
                                        final=True)
    assert choice is not None and choice.backend == "thread"


def test_cores_used_never_exceeds_the_usable_cores() -> None:
    # CPU time from other threads of the process can exceed the cores the trial had.
    choice = _policy.after_thread_trial(seconds_per_call=0.01, cores_used=3.7, cores=2, efficiency=0.9,
                                        final=True)
    assert choice is not None and choice.cores_used == 2.0
    assert "threads used 2.0 of 2 cores" in choice.reason


def test_describe_rule_states_the_thresholds() -> None:
    text = _policy.describe_rule()
    assert f">= {_policy.MIN_PARALLEL_CORES:g} cores" in text
    assert f">= {_policy.MIN_THREAD_EFFICIENCY:.0%}" in text
    assert "GIL is off" in text


def test_validate_backend_accepts_registered_names_only() -> None:
    for name in weft.exec.available_backends():
        assert _policy.validate_backend(name) == name
    with pytest.raises(ConfigError, match=r"backend must be one of \[.*'thread'.*\].* got 'gpu'"):
        _policy.validate_backend("gpu")
    with pytest.raises(ConfigError, match="got 3"):
        _policy.validate_backend(3)
    with pytest.raises(ConfigError, match=r"stage backend must be one of .* got 'auto'"):
        _policy.validate_backend("auto", what="stage backend", exclude=("auto",))


@pytest.fixture
def registered_backend() -> Iterator[str]:
    from weft.exec import _registry

    name = "test_inline"

    def factory(*, workers: int, **options: object) -> weft.exec.Executor:
        return weft.exec.create("serial", workers=workers)

    weft.exec.register(name, factory)
    try:
        yield name
    finally:
        _registry._registered.pop(name, None)


def test_a_backend_added_with_register_is_valid_and_runs(registered_backend: str) -> None:
    assert registered_backend in weft.exec.available_backends()
    assert _policy.validate_backend(registered_backend) == registered_backend
    with weft.exec.create(registered_backend, workers=2) as ex:
        assert list(ex.map(workloads.square, range(5))) == [0, 1, 4, 9, 16]


def test_runtime_choose_backend_is_the_policy() -> None:
    for workload in ("cpu", "native", "io"):
        assert runtime.choose_backend(workload, gil=True, cores=4) == _policy.for_workload(  # type: ignore[arg-type]
            workload, gil=True, cores=4)  # type: ignore[arg-type]


def test_calibration_is_the_policy_choice() -> None:
    assert weft.exec.Calibration is BackendChoice
    old_style = weft.exec.Calibration(backend="thread", reason="r", serial_seconds_per_item=0.1,
                                      thread_efficiency=0.5)
    assert old_style.cores_used is None


def test_register_checks_its_arguments() -> None:
    with pytest.raises(ConfigError, match="identifier, got 'no good'"):
        weft.exec.register("no good", lambda **kw: weft.exec.create("serial"))
    with pytest.raises(ConfigError, match="factory must be callable"):
        weft.exec.register("fine", "not a factory")  # type: ignore[arg-type]
    assert "fine" not in weft.exec.available_backends()


def test_by_throughput_keeps_the_backend_in_use_unless_another_is_clearly_faster() -> None:
    kept = _policy.by_throughput({"thread": 1000.0, "process": 1050.0}, current="thread")
    assert kept.backend == "thread" and "not 1.1x faster" in kept.reason
    switched = _policy.by_throughput({"thread": 1000.0, "process": 2000.0}, current="thread")
    assert switched.backend == "process"
    assert "process 2,000 items/s" in switched.reason and "thread 1,000 items/s" in switched.reason
    assert dict(switched.throughputs or ()) == {"thread": 1000.0, "process": 2000.0}
    with pytest.raises(ConfigError, match="'process'"):
        _policy.by_throughput({"thread": 1.0}, current="process")
