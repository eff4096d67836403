"""Small Parquet datasets and WebDataset shards for the source tests.

Every item carries its ordinal ``i`` (0..n-1), so a test can check that a pass, a
resumed pass or the shares of several ranks hold each item exactly once.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np


def write_parquet(root: Path, n: int, *, files: int = 3, row_group: int = 4, partitioned: bool = True,
                  compression: str = "snappy") -> Path:
    """``n`` rows over ``files`` files (Hive-partitioned by ``part=k/`` and a ``day=...``
    level when ``partitioned``), ``row_group`` rows per row group. Columns: ``i``
    (int64), ``x`` (float32, i / 2), ``emb`` (3 float32, fixed-size list), ``name`` (str)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, n, files + 1).astype(int)
    for k in range(files):
        ids = np.arange(bounds[k], bounds[k + 1], dtype=np.int64)
        emb = pa.FixedSizeListArray.from_arrays(pa.array(np.repeat(ids, 3).astype(np.float32)), 3)
        table = pa.table({"i": ids, "x": (ids / 2).astype(np.float32), "emb": emb,
                          "name": [f"item-{i}" for i in ids]})
        folder = root / f"day=2026-11-0{1 + k % 2}" / f"part={k}" if partitioned else root
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / f"data-{k:03d}.parquet", row_group_size=row_group,
                       compression=compression)
    return root


def parquet_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.parquet"))


def sample_members(i: int) -> list[tuple[str, bytes]]:
    """The members of sample ``i``: a class, a text and a JSON record."""
    return [("cls", str(i).encode()), ("txt", f"text of {i}".encode()), ("json", json.dumps({"i": i}).encode())]


def write_shards(root: Path, n: int, *, shards: int = 3, prefix: str = "shard",
                 compress: bool = False) -> list[Path]:
    """``n`` samples over ``shards`` tar shards (``{prefix}-000000.tar``, ...)."""
    root.mkdir(parents=True, exist_ok=True)
    bounds = np.linspace(0, n, shards + 1).astype(int)
    paths = []
    for s in range(shards):
        path = root / f"{prefix}-{s:06d}.tar{'.gz' if compress else ''}"
        with tarfile.open(path, "w:gz" if compress else "w") as tar:
            for i in range(bounds[s], bounds[s + 1]):
                add_members(tar, f"sample{i:06d}", sample_members(int(i)))
        paths.append(path)
    return paths


def add_members(tar: tarfile.TarFile, key: str, members: list[tuple[str, bytes]]) -> None:
    for ext, data in members:
        info = tarfile.TarInfo(f"{key}.{ext}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def ids(items: list[Any]) -> list[int]:
    """The ``i`` of every row, batch row or sample (a decoded ``cls``, or raw bytes)."""
    out: list[int] = []
    for item in items:
        if "__key__" in item:
            value = item["cls"]
            out.append(int(value) if not isinstance(value, bytes) else int(value.decode()))
        elif isinstance(item["i"], np.ndarray) and item["i"].ndim == 1:
            out.extend(int(v) for v in item["i"])
        else:
            out.append(int(item["i"]))
    return out


# -- module-level item functions (process workers import them by name) --------------------
def row_id(row: dict[str, Any]) -> int:
    """A Parquet row or a decoded sample as its ordinal."""
    return int(row["cls"] if "__key__" in row else row["i"])


def batch_ids(batch: dict[str, Any]) -> np.ndarray:
    return np.asarray(batch["i"])


def row_id_jitter(row: dict[str, Any]) -> int:
    """row_id, finishing out of order (later items are sometimes faster)."""
    import time

    i = row_id(row)
    time.sleep(0.0005 * ((i * 7) % 4))
    return i
