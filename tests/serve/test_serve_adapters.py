"""Model adapters (python specs, ONNX, TorchScript) and the process backend."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest

from weft.errors import ConfigError, ModelError
from weft.serve import Client, Server, ServerConfig, adapter_names, load_model, serve_in_thread
from weft.serve._config import choose_backends


def test_python_specs_by_file_module_and_object() -> None:
    import serve_workloads as sw

    for spec in ("tests/serve_workloads.py:Doubler", "serve_workloads:Doubler", sw.Doubler, sw.Doubler()):
        model = load_model(spec)
        assert model.name == "doubler" and model.platform == "python"
        np.testing.assert_array_equal(model.predict({"x": np.ones((2, 2), np.float32)})["y"], np.full((2, 2), 2))
    renamed = load_model("twice=serve_workloads:Doubler")
    assert renamed.name == "twice"
    function = load_model("serve_workloads:echo")
    assert function.name == "echo" and function.inputs == ()
    assert set(adapter_names()) >= {"python", "onnx", "torchscript"}


@pytest.mark.parametrize("spec, message", [
    ("nowhere.py:Model", "does not exist"), ("serve_workloads:Nope", "has no attribute"),
    ("not_a_module_xyz:Model", "cannot import"), ("model.bin", "no model adapter"),
    ("missing.onnx", "does not exist"),
])
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_model(spec)


def test_load_failures_are_model_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.py"
    path.write_text("class M:\n    def load(self):\n        raise OSError('weights missing')\n"
                    "    def predict(self, inputs):\n        return inputs\n")
    with pytest.raises(ModelError, match="weights missing"):
        load_model(f"{path}:M")
    broken = tmp_path / "broken.py"
    broken.write_text("import not_a_module_xyz\n")
    with pytest.raises(ModelError, match="not_a_module_xyz"):
        load_model(f"{broken}:M")
    with pytest.raises(ModelError, match="not_a_module_xyz"):
        choose_backends(ServerConfig(), [f"{broken}:M"])  # auto reads releases_gil from the module


def _onnx_mlp(path: str) -> tuple[np.ndarray, np.ndarray]:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])], "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return w, b


def test_onnx_model_is_served(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("onnxruntime")
    path = str(tmp_path / "tiny.onnx")
    w, b = _onnx_mlp(path)
    assert [c.backend for c in choose_backends(ServerConfig(), [path])] == ["thread"]
    with serve_in_thread([path], ServerConfig(port=0, max_batch_size=8)) as url, Client(url) as client:
        meta = client.model_metadata("tiny")
        assert meta["platform"] == "onnxruntime_onnx"
        assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
        x = np.arange(8, dtype=np.float32).reshape(2, 4)
        np.testing.assert_allclose(client.infer("tiny", {"x": x})["y"], x @ w + b, rtol=1e-5)


def test_torchscript_model_is_served(tmp_path) -> None:  # type: ignore[no-untyped-def]
    torch = pytest.importorskip("torch", reason="torch is installed only on the GIL interpreter")

    class Net(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 3 - 1

    path = str(tmp_path / "net.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript creation
        torch.jit.script(Net()).save(path)
    with serve_in_thread([path], ServerConfig(port=0)) as url, Client(url) as client:
        assert client.model_metadata("net")["platform"] == "pytorch_libtorch"
        x = np.ones((2, 5), np.float32)
        np.testing.assert_array_equal(client.infer("net", {"INPUT__0": x})["OUTPUT__0"], x * 3 - 1)


@pytest.fixture
def tracker() -> None:
    """Spawned workers start multiprocessing's resource tracker, which lives as long as this
    process: start it first so that no_leaks does not count it."""
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()


def test_process_backend_runs_models_in_worker_processes_with_shared_memory(tracker: None, no_leaks: None) -> None:
    config = ServerConfig(port=0, backend="process", workers=2, max_batch_size=64, max_delay=0.001)
    with Server(["tests/serve_workloads.py:HoldsGil", "tests/serve_workloads.py:Doubler"], config) as server, \
            Client(server.url) as client:
        assert server.statistics().backend == "process"
        out = client.infer("pyloop", {"x": np.array([[1, 2, 3], [4, 5, 6]], np.int64)})
        np.testing.assert_array_equal(out["total"], [6, 15])
        assert int(out["pid"][0]) != os.getpid(), "the model ran in a worker process"
        big = np.random.default_rng(0).standard_normal((64, 1024)).astype(np.float32)  # 256 KiB: shared memory
        np.testing.assert_array_equal(client.infer("doubler", {"x": big})["y"], 2 * big)


def test_auto_backend_rule_is_per_model() -> None:
    import sys

    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    [choice] = choose_backends(ServerConfig(), ["tests/serve_workloads.py:HoldsGil"])
    assert choice.backend == ("process" if gil else "thread")
    if gil:
        assert "'tests/serve_workloads.py:HoldsGil' does not declare releases_gil" in choice.reason
    held, released = choose_backends(ServerConfig(), ["slow=tests/serve_workloads.py:HoldsGil",
                                                      "examples/mlp.py:Model"])
    assert held.backend == choice.backend and (not gil or "'slow'" in held.reason)
    assert released.backend == "thread", "a model holding the GIL does not move the others to processes"
    assert [c.backend for c in choose_backends(ServerConfig(), ["model.onnx", "net.pt"])] == ["thread"] * 2
    requested = choose_backends(ServerConfig(backend="process"), ["examples/mlp.py:Model", "model.onnx"])
    assert [c.backend for c in requested] == ["process"] * 2
    assert requested[0].reason == "backend='process' was requested"


def test_each_model_runs_on_the_backend_it_calls_for(tracker: None, no_leaks: None) -> None:
    import sys

    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    config = ServerConfig(port=0, workers=2)
    with Server(["tests/serve_workloads.py:HoldsGil", "tests/serve_workloads.py:Doubler"], config) as server, \
            Client(server.url) as client:
        out = client.infer("pyloop", {"x": np.array([[1, 2, 3], [4, 5, 6]], np.int64)})
        np.testing.assert_array_equal(out["total"], [6, 15])
        assert (int(out["pid"][0]) != os.getpid()) == gil, "a process worker on a GIL build only"
        x = np.arange(6, dtype=np.float32).reshape(2, 3)
        np.testing.assert_array_equal(client.infer("doubler", {"x": x})["y"], 2 * x)
        stats = server.statistics()
    backends = {name: choice.backend for name, choice in stats.model_backends.items()}
    if gil:
        assert backends == {"pyloop": "process", "doubler": "thread"}
        assert stats.backend == "process+thread"
        assert "does not declare releases_gil" in stats.model_backends["pyloop"].reason
        assert "releases the GIL" in stats.model_backends["doubler"].reason
        assert "pyloop on process" in stats.backend_reason and "doubler on thread" in stats.backend_reason
    else:
        assert backends == {"pyloop": "thread", "doubler": "thread"}
        assert stats.backend == "thread" and "the GIL is off" in stats.backend_reason
    assert stats.models["pyloop"].completed == 1 and stats.models["doubler"].completed == 1


def test_a_registered_adapter_declares_whether_it_releases_the_gil(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from weft.serve import _adapters, register_adapter

    monkeypatch.setattr(_adapters, "_registry", list(_adapters._registry))  # forget them afterwards
    register_adapter("native", matches=lambda spec: isinstance(spec, str) and spec.endswith(".native"),
                     loader=lambda spec: None, releases_gil=True)  # type: ignore[arg-type,return-value]
    register_adapter("script", matches=lambda spec: isinstance(spec, str) and spec.endswith(".script"),
                     loader=lambda spec: None)  # type: ignore[arg-type,return-value]
    assert [c.backend for c in choose_backends(ServerConfig(), ["m.native"])] == ["thread"]
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    chosen = [c.backend for c in choose_backends(ServerConfig(), ["m.native", "m.script"])]
    assert chosen == ["thread", "process" if gil else "thread"]


@pytest.mark.parametrize("sidecar", [None, "two.pt.json", "two.json"])
def test_torchscript_with_two_inputs(tmp_path, sidecar: str | None) -> None:  # type: ignore[no-untyped-def]
    torch = pytest.importorskip("torch", reason="torch is installed only on the GIL interpreter")

    class Two(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return a + b, a - b

    path = str(tmp_path / "two.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(Two()).save(path)
    names = (["INPUT__0", "INPUT__1"], ["OUTPUT__0", "OUTPUT__1"])
    if sidecar is not None:
        names = (["a", "b"], ["sum", "difference"])
        doc = {"inputs": [{"name": n, "datatype": "FP32", "shape": [-1, 3]} for n in names[0]],
               "outputs": [{"name": n, "datatype": "FP32", "shape": [-1, 3]} for n in names[1]]}
        (tmp_path / sidecar).write_text(json.dumps(doc))
    with serve_in_thread([path], ServerConfig(port=0, backend="thread")) as url, Client(url) as client:
        meta = client.model_metadata("two")
        assert [t["name"] for t in meta["inputs"]] == names[0]
        assert [t["name"] for t in meta["outputs"]] == names[1]
        a, b = np.ones((2, 3), np.float32), np.full((2, 3), 2, np.float32)
        out = client.infer("two", dict(zip(names[0], (a, b), strict=True)))
    np.testing.assert_array_equal(out[names[1][0]], a + b)
    np.testing.assert_array_equal(out[names[1][1]], a - b)
