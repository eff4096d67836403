"""Checkpoints of a whole job: nested state restored exactly, the data pipeline's position
and the random generators' states in the same atomic file, no pickle."""

from __future__ import annotations

import json
import math
import random
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import weft.data as wd
import weft.train as wt
from weft.errors import ConfigError
from weft.train._safetensors import load_safetensors


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Equal values of exactly the same types, all the way down (NaN equal to NaN)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys or their order differ"
        for (ka, va), kb in zip(a.items(), b, strict=True):
            assert type(ka) is type(kb), f"{where}: key {ka!r} changed type"
            assert_same(va, b[kb], f"{where}/{ka}")
        assert getattr(a, "_metadata", None) == getattr(b, "_metadata", None), f"{where}: _metadata"
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}/{i}")
    elif isinstance(a, np.ndarray | np.generic):
        assert a.dtype == b.dtype and np.shape(a) == np.shape(b), where
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    elif isinstance(a, float):
        assert a == b and math.copysign(1, a) == math.copysign(1, b), where
    else:
        assert a == b, where


def plain_state() -> dict[str, Any]:
    od: OrderedDict[str, Any] = OrderedDict([("z", np.arange(3, dtype=np.int16)), ("a", 1)])
    od._metadata = {"": {"version": 2}}  # type: ignore[attr-defined]  # what torch's state_dict() carries
    return {
        "weights": {"layer.0": np.ones((2, 3), np.float32), "layer.1": np.zeros(0, np.float64)},
        "opt": {"state": {0: {"step": 3, "m": np.full(4, 0.5)}, 1: {}}, "param_groups": [
            {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-08, "weight_decay": 0, "foreach": None,
             "maximize": False, "params": [0, 1]}]},
        "keys": {1: "int", "1": "str", 2.5: "float", None: "none", False: "bool", (1, "a"): "tuple"},
        "order": {"b": 1, "a": 2, "c": 3},
        "floats": [1.0, 1, -0.0, float("inf"), float("-inf"), float("nan"), 10 ** 30],
        "empties": {"d": {}, "l": [], "t": (), "nested": [[], {}, ()]},
        "scalars": (np.float32(1.5), np.int64(-3), np.bool_(True)),
        "odict": od,
        "text": "päth/with/slashes",
        "a/b": np.array([1]), "a": {"b": np.array([2])},  # flatten to the same name
    }


def test_nested_state_round_trips_exactly(tmp_path: Path) -> None:
    state = plain_state()
    ckpt = wt.Checkpoints(tmp_path)
    ckpt.save(5, state)
    restored = ckpt.restore()
    assert_same(state, restored.state)
    assert restored.data is None and restored.rng is None


def test_background_save_keeps_the_state_as_it_was_at_save(tmp_path: Path) -> None:
    state = {"w": np.zeros(3), "meta": {"epoch": 1, "seen": [1, 2]}}
    with wt.Checkpoints(tmp_path, background=True) as ckpt:
        ckpt.save(1, state, data={"position": [4]})
        state["w"][:] = 7
        state["meta"]["epoch"] = 2
        state["meta"]["seen"].append(3)
        ckpt.wait()
        back = ckpt.restore()
    assert_same(back.state, {"w": np.zeros(3), "meta": {"epoch": 1, "seen": [1, 2]}})
    assert back.data == {"position": [4]}


def test_tensors_are_entries_under_flattened_names_and_no_pickle(tmp_path: Path) -> None:
    ckpt = wt.Checkpoints(tmp_path)
    info = ckpt.save(1, plain_state(), data={"epoch": 0}, rng=True).info
    raw, metadata = load_safetensors(info.path)
    assert {"weights/layer.0", "weights/layer.1", "opt/state/0/m", "odict/z", "a/b"} <= set(raw)
    assert any(name.startswith("a/b#") for name in raw), "a clash of flattened names gets a fresh name"
    assert any(name.startswith("__weft_rng__/") for name in raw), "the NumPy generator's key is an entry"
    header = json.loads(metadata["weft"])
    assert header["step"] == 1 and "state" in header and "rng" in header and header["data"] == {
        "dict": [["epoch", 0]]}
    assert b"pickle" not in info.path.read_bytes() and b"\x80\x04" not in info.path.read_bytes()[:16]


def test_unsupported_values_are_named(tmp_path: Path) -> None:
    ckpt = wt.Checkpoints(tmp_path)
    with pytest.raises(ConfigError, match=r"'opt/param_groups/0/fn' is a function"):
        ckpt.save(0, {"opt": {"param_groups": [{"fn": lambda: 0}]}})
    with pytest.raises(ConfigError, match=r"'s' is a set"):
        ckpt.save(0, {"s": {1, 2}})
    with pytest.raises(ConfigError, match="key"):
        ckpt.save(0, {"k": {frozenset(): 1}})
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(ConfigError, match="contains itself"):
        ckpt.save(0, loop)
    with pytest.raises(ConfigError, match="rng= takes True, a generator"):
        ckpt.save(0, {}, rng="yes")
    assert ckpt.checkpoints() == []


def test_pipeline_position_and_generators_resume_exactly(tmp_path: Path) -> None:
    """Stop mid-epoch; restore into fresh objects; the rest is what the uninterrupted run saw."""
    source = np.arange(40, dtype=np.float32)

    def pipeline() -> Any:
        return wd.from_array(source).shuffle(seed=3).map(lambda x: x * 2, workers=2, backend="thread").batch(
            3).prefetch(2).epochs(None)

    def draws(gen: np.random.Generator, py: random.Random) -> tuple[float, ...]:
        return gen.random(), py.random(), random.random(), float(np.random.rand())

    def run(steps: int, pipe: Any, gen: np.random.Generator, py: random.Random) -> list[Any]:
        seen = []
        for step, batch in enumerate(pipe, 1):
            seen.append((batch.tolist(), draws(gen, py)))
            if step == steps:
                break
        return seen

    random.seed(1)
    np.random.seed(1)
    pipe, gen, py = pipeline(), np.random.default_rng(7), random.Random(9)
    expected = run(30, pipe, gen, py)
    pipe.close()

    random.seed(1)
    np.random.seed(1)
    pipe, gen, py = pipeline(), np.random.default_rng(7), random.Random(9)
    first = run(17, pipe, gen, py)  # epoch 0 has 14 batches: stops in the middle of epoch 1
    with wt.Checkpoints(tmp_path, background=True) as ckpt:
        ckpt.save(17, {"seen": len(first)}, data=pipe.state_dict(), rng=[gen, py])
    pipe.close()
    draws(gen, py)  # the generators move on after the save: restoring must undo this

    restored = wt.Checkpoints(tmp_path).restore()
    pipe, gen, py = pipeline(), np.random.default_rng(0), random.Random(0)
    pipe.load_state_dict(restored.data)
    restored.restore_rng(gen, py)
    second = run(30 - 17, pipe, gen, py)
    pipe.close()
    assert first + second == expected


def test_restore_rng_checks_what_it_is_given(tmp_path: Path) -> None:
    ckpt = wt.Checkpoints(tmp_path, keep_last=None)
    ckpt.save(0, {"x": 1})
    with pytest.raises(ConfigError, match="saved without random generator states"):
        ckpt.restore().restore_rng()
    ckpt.save(1, {"x": 1}, rng=np.random.default_rng(0))
    restored = ckpt.restore()
    with pytest.raises(ConfigError, match=r"1 generator\(s\) \(numpy.Generator\) but restore_rng\(\) got 0"):
        restored.restore_rng()
    with pytest.raises(ConfigError, match=r"is a Random but a numpy\.Generator was saved"):
        restored.restore_rng(random.Random())
    ckpt.save(2, {"x": 1}, rng=True)
    state = random.getstate()
    random.random()
    ckpt.restore().restore_rng()
    assert random.getstate() == state, "back to the state at the save, before the draw"


def test_deprecated_names_warn(tmp_path: Path) -> None:
    ckpt = wt.Checkpoints(tmp_path)
    with pytest.warns(DeprecationWarning, match=r"save\(step, state\)"):
        ckpt.save(0, tensors={"x": np.ones(2)})
    restored = ckpt.restore()
    with pytest.warns(DeprecationWarning, match="Checkpoint.state"):
        tensors = restored.tensors
    assert tensors is restored.state


def test_torch_model_and_optimizer_state_round_trip(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed on this interpreter")
    torch.manual_seed(0)

    def build() -> tuple[Any, Any]:
        model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                                    torch.nn.Dropout(0.2), torch.nn.Linear(8, 2))
        return model, torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step(model: Any, opt: Any) -> Any:
        opt.zero_grad()
        loss = model(torch.randn(6, 3)).pow(2).mean()
        loss.backward()
        opt.step()
        return loss.detach()

    model, opt = build()
    for _ in range(3):
        step(model, opt)
    ckpt = wt.Checkpoints(tmp_path)
    state = {"model": model.state_dict(), "opt": opt.state_dict(), "half": torch.ones(2, dtype=torch.bfloat16)}
    ckpt.save(600, state, rng=True)
    expected = [step(model, opt) for _ in range(3)]

    restored = ckpt.restore(framework="torch")
    other, other_opt = build()
    other.load_state_dict(restored.state["model"])
    other_opt.load_state_dict(restored.state["opt"])
    restored.restore_rng()
    got = [step(other, other_opt) for _ in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True)), "training continues identically"
    for name, value in model.state_dict().items():
        assert torch.equal(value, other.state_dict()[name]), name
    back = restored.state
    assert back["opt"]["param_groups"] == state["opt"]["param_groups"]
    assert back["model"]._metadata == state["model"]._metadata
    assert back["half"].dtype == torch.bfloat16 and list(back["opt"]["state"]) == [0, 1, 2, 3, 4, 5]
