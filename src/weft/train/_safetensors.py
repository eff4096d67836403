"""The safetensors file format, written and read with NumPy alone (no pickle).

Layout: an 8-byte little-endian header length N; N bytes of JSON (padded with
spaces to a multiple of 8) mapping each tensor name to ``{"dtype", "shape",
"data_offsets": [begin, end]}`` plus an optional ``"__metadata__"`` map of
strings; then the raw little-endian data, tensors back to back. Files written
here load with the ``safetensors`` package and vice versa.

Tensors are written largest item size first, so with the 8-byte-aligned header
every tensor starts aligned to its own item size.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from weft.errors import CheckpointError, ConfigError

__all__ = ["BF16", "load_safetensors", "save_safetensors", "write_safetensors"]

#: NumPy has no bfloat16: such tensors travel as uint16 arrays tagged with this name.
BF16 = "BF16"

_TO_NUMPY: dict[str, str] = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?",
}
_FROM_NUMPY: dict[str, str] = {np.dtype(v).str: k for k, v in _TO_NUMPY.items() if k != "BF16"}
#: The largest header a reader accepts, about the safetensors package's own limit (100 MB),
#: so a corrupted length field cannot make a reader allocate gigabytes.
_MAX_HEADER = 100 * 1024 * 1024
#: Bytes per write/read call when hashing inline: large enough that call overhead vanishes,
#: small enough to be a slice of any real checkpoint.
_CHUNK = 64 * 1024 * 1024

#: A tensor to write: a NumPy array, or (dtype tag, array) for tags NumPy lacks (BF16).
TensorLike = Any

#: Below this many bytes the digest is computed inline; above, on a helper thread, where
#: overlapping it with the I/O saves more than handing the chunks over costs.
_OVERLAP_MIN = 16 * 1024 * 1024
#: Chunk size while hashing beside the I/O: small enough that the two overlap well.
_CHUNK_OVERLAP = 8 * 1024 * 1024


class _Sha256:
    """sha256 of a byte stream. For large payloads the hashing runs on one weft worker
    thread, in order, while the calling thread does the I/O (hashlib and file I/O
    both release the GIL), so a save or a verified restore costs about
    max(hash, I/O) instead of their sum. Chunks must not change until ``hexdigest()``."""

    def __init__(self, total: int, prefix: bytes = b"") -> None:
        self._digest = hashlib.sha256(prefix)
        self._futures: list[Any] = []
        self._executor: Any = None
        if total >= _OVERLAP_MIN:
            import weft.exec

            self._executor = weft.exec.create("thread", workers=1, reason="sha256 beside the file I/O")

    @property
    def chunk(self) -> int:
        return _CHUNK_OVERLAP if self._executor is not None else _CHUNK

    def update(self, data: Any) -> None:
        if self._executor is None:
            self._digest.update(data)
        else:
            self._futures.append(self._executor.submit(self._digest.update, data))

    def hexdigest(self) -> str:
        for future in self._futures:
            future.result()
        self._futures.clear()
        return self._digest.hexdigest()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.close(cancel=True)
            self._executor = None

    def __enter__(self) -> _Sha256:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tag_and_array(name: str, value: TensorLike) -> tuple[str, np.ndarray]:
    if isinstance(value, tuple):
        tag, array = value
        return tag, np.asarray(array, order="C")
    if not isinstance(value, np.ndarray | np.generic):
        raise ConfigError(f"tensor {name!r} is a {type(value).__name__}; pass NumPy arrays "
                          "(torch tensors are converted by weft.train.Checkpoints)")
    array = np.asarray(value, order="C")
    le = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    tag = _FROM_NUMPY.get(np.dtype(le).str)
    if tag is None:
        raise ConfigError(f"tensor {name!r} has dtype {array.dtype}, which safetensors cannot hold; "
                          f"use one of {sorted(_TO_NUMPY)}")
    if array.dtype.byteorder == ">":
        array = array.astype(le)
    return tag, array


def write_safetensors(f: BinaryIO, tensors: Mapping[str, TensorLike],
                      metadata: Mapping[str, str] | None = None) -> tuple[str, int]:
    """Write ``tensors`` to the open binary file ``f``; return (sha256 hex, bytes written)."""
    items = []
    for name, value in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ConfigError(f"tensor names must be strings other than '__metadata__', got {name!r}")
        tag, array = _tag_and_array(name, value)
        items.append((name, tag, array))
    items.sort(key=lambda t: (-t[2].dtype.itemsize, t[0]))
    header: dict[str, Any] = {}
    if metadata:
        bad = {k: v for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)}
        if bad:
            raise ConfigError(f"safetensors metadata must map str to str; bad entries: {bad!r}")
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name, tag, array in items:
        header[name] = {"dtype": tag, "shape": list(array.shape), "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    prefix = struct.pack("<Q", len(raw)) + raw
    with _Sha256(offset, prefix) as digest:
        f.write(prefix)
        for _name, _tag, array in items:
            if array.nbytes == 0:
                continue
            view = array.reshape(-1).data.cast("B")
            for start in range(0, len(view), digest.chunk):
                chunk = view[start:start + digest.chunk]
                digest.update(chunk)
                f.write(chunk)
        return digest.hexdigest(), len(prefix) + offset


def save_safetensors(path: str | os.PathLike[str], tensors: Mapping[str, TensorLike],
                     metadata: Mapping[str, str] | None = None, *, durable: bool = True) -> str:
    """Write a safetensors file atomically; returns its sha256."""
    from weft.train._atomic import atomic_write

    with atomic_write(Path(path), durable=durable) as f:
        sha, _size = write_safetensors(f, tensors, metadata)
    return sha


def _fail(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"checkpoint file {str(path)!r} is {what}; restore an earlier step "
                           "(Checkpoints.restore(step=...)) or delete the file")


def load_safetensors(path: str | os.PathLike[str], *, sha256: str | None = None,
                     size: int | None = None) -> tuple[dict[str, tuple[str, np.ndarray]], dict[str, str]]:
    """Read a safetensors file: ({name: (dtype tag, array)}, metadata).

    With ``sha256``/``size`` the file is checked against them; any truncation,
    corruption or malformed header raises :class:`CheckpointError` naming the file.
    """
    p = Path(path)
    try:
        f = open(p, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file {str(p)!r} is missing") from None
    with f:
        actual = os.fstat(f.fileno()).st_size
        if size is not None and actual != size:
            raise _fail(p, f"{actual} bytes long but {size} were written (truncated or overwritten)")
        prefix = f.read(8)
        if len(prefix) < 8:
            raise _fail(p, "truncated (no header)")
        (n,) = struct.unpack("<Q", prefix)
        if n > _MAX_HEADER or 8 + n > actual:
            raise _fail(p, f"corrupted (header length {n} does not fit in {actual} bytes)")
        raw = f.read(n)
        try:
            header = json.loads(raw)
            if not isinstance(header, dict):
                raise ValueError("header is not an object")
        except ValueError as exc:
            raise _fail(p, f"corrupted (unreadable header: {exc})") from None
        metadata = header.pop("__metadata__", None) or {}
        entries = []
        try:
            for name, info in header.items():
                tag = info["dtype"]
                shape = tuple(int(d) for d in info["shape"])
                begin, end = (int(x) for x in info["data_offsets"])
                dtype = np.dtype(_TO_NUMPY[tag])
                if end - begin != math.prod(shape) * dtype.itemsize or begin < 0:
                    raise ValueError(f"tensor {name!r} offsets do not match its shape")
                entries.append((begin, end, name, tag, shape, dtype))
        except (KeyError, TypeError, ValueError) as exc:
            raise _fail(p, f"corrupted (bad tensor entry: {exc})") from None
        entries.sort()
        position = 0
        for begin, end, name, *_ in entries:
            if begin != position:
                raise _fail(p, f"corrupted (tensor {name!r} does not follow the previous one)")
            position = end
        if 8 + n + position != actual:
            raise _fail(p, f"truncated or padded ({actual} bytes, header describes {8 + n + position})")
        tensors: dict[str, tuple[str, np.ndarray]] = {}
        with _Sha256(position if sha256 is not None else 0, prefix + raw) as digest:
            for _begin, _end, name, tag, shape, dtype in entries:
                array = np.empty(shape, dtype=dtype)
                if array.nbytes:
                    view = array.reshape(-1).data.cast("B")
                    for start in range(0, len(view), digest.chunk):
                        chunk = view[start:start + digest.chunk]
                        if f.readinto(chunk) != len(chunk):
                            raise _fail(p, "truncated while reading")
                        if sha256 is not None:
                            digest.update(chunk)
                tensors[name] = (tag, array)
            if sha256 is not None and digest.hexdigest() != sha256:
                raise _fail(p, "corrupted (sha256 does not match the manifest)")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise _fail(p, "corrupted (__metadata__ is not a map of strings)")
    return tensors, metadata
