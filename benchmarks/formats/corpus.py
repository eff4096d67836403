"""The data every contender of the formats benchmark reads (made once, reused).

- Parquet: a Hive-partitioned table (``date=2026-11-0d/part-k.parquet``) of numeric
  training features: ``id`` int64, ``label`` int32, ``x`` float32, ``y`` float64 and an
  ``emb`` fixed-size list of 8 float32, snappy-compressed, in row groups of 128 Ki rows.
- WebDataset: tar shards of samples ``{key}.jpg`` (random bytes of 1-6 KB, not decoded:
  the benchmark measures reading, not image decoding), ``{key}.cls`` and ``{key}.json``.

Lives under ``benchmarks/.data/formats`` (ignored by git); a stamp file records the
parameters (beside the folder, where no reader sees it), so changed parameters make
the data again.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
ROOT = REPO / "benchmarks" / ".data" / "formats"

PARQUET = {"dates": 4, "files_per_date": 2, "rows_per_file": 512 * 1024, "row_group": 128 * 1024, "emb": 8}
SHARDS = {"shards": 16, "samples_per_shard": 1000, "min_bytes": 1024, "max_bytes": 6 * 1024}


def _stamp_file(folder: Path) -> Path:
    return folder.parent / f"{folder.name}.params.json"  # beside the data: no reader sees it


def _fresh(folder: Path, params: dict[str, int]) -> bool:
    stamp = _stamp_file(folder)
    return folder.exists() and stamp.exists() and json.loads(stamp.read_text()) == params


def _stamp(folder: Path, params: dict[str, int]) -> None:
    _stamp_file(folder).write_text(json.dumps(params))


def parquet_dir() -> Path:
    """The Parquet table, made if missing."""
    folder = ROOT / "table"
    if _fresh(folder, PARQUET):
        return folder
    import pyarrow as pa
    import pyarrow.parquet as pq

    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(0)
    n = PARQUET["rows_per_file"]
    start = 0
    for d in range(PARQUET["dates"]):
        sub = folder / f"date=2026-11-{d + 1:02d}"
        sub.mkdir(parents=True)
        for k in range(PARQUET["files_per_date"]):
            emb = rng.standard_normal(n * PARQUET["emb"], dtype=np.float32)
            table = pa.table({
                "id": np.arange(start, start + n, dtype=np.int64),
                "label": rng.integers(0, 1000, n, dtype=np.int32),
                "x": rng.standard_normal(n, dtype=np.float32),
                "y": rng.standard_normal(n),
                "emb": pa.FixedSizeListArray.from_arrays(pa.array(emb), PARQUET["emb"]),
            })
            pq.write_table(table, sub / f"part-{k:04d}.parquet", row_group_size=PARQUET["row_group"],
                           compression="snappy")
            start += n
    _stamp(folder, PARQUET)
    return folder


def parquet_rows() -> int:
    return PARQUET["dates"] * PARQUET["files_per_date"] * PARQUET["rows_per_file"]


def shard_dir() -> Path:
    """The tar shards, made if missing."""
    folder = ROOT / "shards"
    if _fresh(folder, SHARDS):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    key = 0
    for s in range(SHARDS["shards"]):
        with tarfile.open(folder / f"shard-{s:06d}.tar", "w") as tar:
            for _ in range(SHARDS["samples_per_shard"]):
                size = int(rng.integers(SHARDS["min_bytes"], SHARDS["max_bytes"]))
                members = [("jpg", rng.bytes(size)), ("cls", str(key % 1000).encode()),
                           ("json", json.dumps({"key": key, "caption": f"sample {key}"}).encode())]
                for ext, data in members:
                    info = tarfile.TarInfo(f"{key:08d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                key += 1
    _stamp(folder, SHARDS)
    return folder


def samples() -> int:
    return SHARDS["shards"] * SHARDS["samples_per_shard"]
