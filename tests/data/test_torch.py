"""torch interop: a pipeline behind DataLoader(batch_size=None), batches as tensors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import data_workloads as w
import weft.data as wd

torch = pytest.importorskip("torch")
from weft.data.torch import as_iterable_dataset, to_tensors  # noqa: E402


def test_import_weft_data_does_not_import_torch() -> None:
    code = "import sys, weft.data; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


def test_dataloader_over_a_pipeline() -> None:
    records = [{"x": np.full(3, i, dtype=np.float32), "y": i} for i in range(10)]
    pipe = wd.from_iterable(records).map(lambda r: r, workers=2, backend="thread").batch(4)
    loader = torch.utils.data.DataLoader(as_iterable_dataset(pipe), batch_size=None)
    batches = list(loader)
    assert [tuple(b["x"].shape) for b in batches] == [(4, 3), (4, 3), (2, 3)]
    assert torch.cat([b["y"] for b in batches]).tolist() == list(range(10))
    assert batches[0]["x"].dtype == torch.float32


def test_dataset_state_round_trip() -> None:
    make = lambda: wd.from_range(20).map(w.inc, workers=0).batch(5)  # noqa: E731
    ds = as_iterable_dataset(make())
    it = iter(ds)
    first = next(it)
    state = ds.state_dict()
    del it
    again = as_iterable_dataset(make())
    again.load_state_dict(state)
    rest = list(again)
    assert torch.cat([first, *rest]).tolist() == list(range(1, 21))


def test_to_tensors_shares_memory_and_handles_nesting() -> None:
    a = np.arange(6, dtype=np.int64).reshape(2, 3)
    out = to_tensors({"a": a, "pair": (np.float32(1.5), "label"), "list": [np.zeros(2)]})
    assert isinstance(out["a"], torch.Tensor) and out["a"].data_ptr() == a.ctypes.data
    assert out["pair"][0].item() == 1.5 and out["pair"][1] == "label"
    assert isinstance(out["list"][0], torch.Tensor)
    readonly = np.arange(3)
    readonly.flags.writeable = False
    assert to_tensors(readonly).tolist() == [0, 1, 2]  # copied: torch needs writable memory


def test_to_tensors_keeps_namedtuples() -> None:
    batch = wd.default_collate([w.Pair(np.full(2, i, dtype=np.float32), i) for i in range(3)])
    out = to_tensors(batch)
    assert type(out) is w.Pair
    assert isinstance(out.x, torch.Tensor) and tuple(out.x.shape) == (3, 2)
    assert out.y.tolist() == [0, 1, 2]


def test_pin_memory_pins_where_possible() -> None:
    out = to_tensors({"a": np.ones(4, dtype=np.float32)}, pin_memory=True)
    assert out["a"].tolist() == [1.0] * 4
    if torch.cuda.is_available():
        assert out["a"].is_pinned()


def test_multiple_dataloader_workers_are_refused() -> None:
    from weft.errors import ConfigError

    ds = as_iterable_dataset(wd.from_range(4))
    with pytest.raises(ConfigError):
        as_iterable_dataset([1, 2])  # type: ignore[arg-type]
    assert [int(x) for x in torch.utils.data.DataLoader(ds, batch_size=None)] == [0, 1, 2, 3]
