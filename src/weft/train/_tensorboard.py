"""TensorBoard event files, written without TensorFlow or torch.

An event file is a sequence of TFRecords: the length (uint64, little-endian), the
masked CRC-32C of those 8 bytes, the data, the masked CRC-32C of the data. Each
record's data is an ``Event`` protobuf, encoded here by hand: ``wall_time`` (field 1,
double), ``step`` (2, int64), ``file_version`` (3, string; the first record only) and
``summary`` (5) holding one ``value`` (1) with ``tag`` (1) and ``simple_value``
(2, float32), which is what TensorBoard's scalar dashboard reads.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterable
from pathlib import Path

__all__ = ["crc32c", "encode_scalar_event", "masked_crc32c", "write_scalars"]

FILE_VERSION = b"brain.Event:2"


def _table() -> list[int]:
    poly = 0x82F63B78  # Castagnoli, reflected
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 in two's complement, as protobuf encodes negatives
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def encode_event(wall_time: float, step: int, *, file_version: bytes | None = None,
                 summary: bytes | None = None) -> bytes:
    data = b"\x09" + struct.pack("<d", wall_time)
    if step:
        data += b"\x10" + _varint(step)
    if file_version is not None:
        data += _field(3, file_version)
    if summary is not None:
        data += _field(5, summary)
    return data


def encode_scalar_event(tag: str, value: float, step: int, wall_time: float) -> bytes:
    """An Event holding one scalar summary value."""
    value_message = _field(1, tag.encode()) + b"\x15" + struct.pack("<f", value)
    return encode_event(wall_time, step, summary=_field(1, value_message))


def _record(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


def write_scalars(directory: str | os.PathLike[str], points: Iterable[tuple[str, int, float, float]], *,
                  start_time: float | None = None) -> Path:
    """Write (tag, step, value, wall_time) points to a new event file in ``directory``; returns its path.

    Values are stored as float32, as TensorBoard's ``simple_value`` is.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.time() if start_time is None else start_time
    name = f"events.out.tfevents.{int(start)}.{socket.gethostname()}.{os.getpid()}"
    path = folder / name
    suffix = 0
    while path.exists():
        suffix += 1
        path = folder / f"{name}.{suffix}"
    tmp = folder / f".weft-tmp-{os.getpid()}-{path.name.replace('tfevents', 'events')}"  # unseen by TensorBoard
    with open(tmp, "wb") as f:
        f.write(_record(encode_event(start, 0, file_version=FILE_VERSION)))
        for tag, step, value, wall_time in points:
            f.write(_record(encode_scalar_event(tag, value, step, wall_time)))
    os.replace(tmp, path)
    return path
