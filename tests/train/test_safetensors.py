"""The safetensors writer and reader: round-trips, validation, interop with the safetensors package."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import weft.train as wt
from weft.errors import CheckpointError, ConfigError
from weft.train._safetensors import load_safetensors

DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8,
          np.uint64, np.uint32, np.uint16, np.uint8, np.bool_]


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda s: s != "__metadata__"),
                       st.sampled_from(DTYPES).flatmap(
                           lambda d: hnp.arrays(dtype=d, shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0))),
                       max_size=5))
def test_round_trip(tmp_path_factory: pytest.TempPathFactory, tensors: dict[str, np.ndarray]) -> None:
    path = tmp_path_factory.mktemp("st") / "x.safetensors"
    sha = wt.save_safetensors(path, tensors, {"k": "v"}, durable=False)
    back, meta = load_safetensors(path, sha256=sha)
    assert meta == {"k": "v"}
    assert sorted(back) == sorted(tensors)
    for name, array in tensors.items():
        _tag, got = back[name]
        assert got.dtype == array.dtype and got.shape == array.shape
        np.testing.assert_array_equal(got, array)


def test_layout_is_the_safetensors_layout(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "a.safetensors"
    wt.save_safetensors(path, {"a": np.arange(3, dtype=np.int8), "b": np.ones((2, 2), np.float32)})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0
    header = json.loads(raw[8:8 + n])
    assert header["b"] == {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}  # widest first: aligned
    assert header["a"] == {"dtype": "I8", "shape": [3], "data_offsets": [16, 19]}
    assert len(raw) == 8 + n + 19


def test_big_endian_input_is_stored_little_endian(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "be.safetensors"
    wt.save_safetensors(path, {"x": np.arange(4, dtype=">f4")})
    (_, got), = load_safetensors(path)[0].values()
    assert got.dtype == np.dtype("<f4")
    np.testing.assert_array_equal(got, np.arange(4))


def test_unsupported_inputs_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="complex"):
        wt.save_safetensors(tmp_path / "c", {"z": np.ones(2, np.complex64)})
    with pytest.raises(ConfigError, match="str to str"):
        wt.save_safetensors(tmp_path / "m", {"z": np.ones(2)}, {"k": 1})  # type: ignore[dict-item]
    assert not list(tmp_path.iterdir()), "a refused write leaves no file behind"


def test_interop_with_the_safetensors_package(tmp_path) -> None:  # type: ignore[no-untyped-def]
    st_numpy = pytest.importorskip("safetensors.numpy", reason="the safetensors package is not installed here")
    from safetensors import safe_open

    ours = tmp_path / "ours.safetensors"
    tensors = {"w": np.random.default_rng(0).standard_normal((7, 5)).astype(np.float32),
               "i": np.arange(10, dtype=np.int64), "m": np.array([True, False])}
    wt.save_safetensors(ours, tensors, {"step": "3"})
    loaded = st_numpy.load_file(str(ours))
    for k, v in tensors.items():
        np.testing.assert_array_equal(loaded[k], v)
    with safe_open(str(ours), "np") as f:
        assert f.metadata() == {"step": "3"}

    theirs = tmp_path / "theirs.safetensors"
    st_numpy.save_file(tensors, str(theirs), metadata={"by": "safetensors"})
    back, meta = load_safetensors(theirs)
    assert meta == {"by": "safetensors"}
    for k, v in tensors.items():
        np.testing.assert_array_equal(back[k][1], v)


@pytest.mark.parametrize("damage", ["truncate_data", "truncate_header", "bad_json", "huge_header", "flip_byte"])
def test_damaged_files_name_the_file(tmp_path, damage: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "d.safetensors"
    sha = wt.save_safetensors(path, {"w": np.arange(100, dtype=np.float32)})
    raw = bytearray(path.read_bytes())
    if damage == "truncate_data":
        raw = raw[:-10]
    elif damage == "truncate_header":
        raw = raw[:20]
    elif damage == "bad_json":
        raw[9] = ord("#")
    elif damage == "huge_header":
        raw[:8] = struct.pack("<Q", 1 << 40)
    else:
        raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=r"d\.safetensors"):
        load_safetensors(path, sha256=sha)
