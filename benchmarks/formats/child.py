"""One contender of the formats benchmark, in a fresh process: reads the data once and
prints ``{"items": ..., "rows": ..., "seconds": ...}`` as JSON on the last line.

    python child.py CONTENDER DATA_DIR [ROW_LIMIT]

Runs in weft's venv or in a peer's (``benchmarks/.envs``), so it imports only what its
contender needs. The clock starts when the contender's reader is made (after imports
and, for Ray, ``ray.init``) and stops after the last item; every contender touches
each item it gets (a row count, or the length of a sample's bytes), so lazy readers
do the work they claim.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

BATCH_ROWS = 65_536
_NAME = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


def _rows_of(batch: dict[str, Any]) -> int:
    return len(next(iter(batch.values())))


# -- Parquet ----------------------------------------------------------------------------
def pyarrow_scan(root: str, limit: int) -> tuple[int, int]:
    """The limit: pyarrow.dataset's own scan, record batches as they come (no conversion)."""
    import pyarrow.dataset as ds

    items = rows = 0
    for batch in ds.dataset(root, format="parquet", partitioning="hive").to_batches(batch_size=BATCH_ROWS):
        items += 1
        rows += batch.num_rows
    return items, rows


def pyarrow_scan_numpy(root: str, limit: int) -> tuple[int, int]:
    """pyarrow's scan plus what weft's batch mode hands on: every column as a NumPy array."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    def to_numpy(column: Any) -> Any:  # as weft converts: a fixed-size list of numbers to a 2-D array
        if pa.types.is_fixed_size_list(column.type):
            return column.flatten().to_numpy().reshape(len(column), column.type.list_size)
        return column.to_numpy(zero_copy_only=False)

    items = rows = 0
    for batch in ds.dataset(root, format="parquet", partitioning="hive").to_batches(batch_size=BATCH_ROWS):
        columns = {name: to_numpy(batch.column(i)) for i, name in enumerate(batch.schema.names)}
        items += 1
        rows += len(columns["id"])
    return items, rows


def weft_batches(root: str, limit: int) -> tuple[int, int]:
    import weft.data as wd

    items = rows = 0
    for batch in wd.from_parquet(root, rows="batches", batch_rows=BATCH_ROWS):
        items += 1
        rows += _rows_of(batch)
    return items, rows


def weft_rows(root: str, limit: int) -> tuple[int, int]:
    import weft.data as wd

    rows = 0
    for row in wd.from_parquet(root).take(limit):
        rows += row["id"] >= 0
    return rows, rows


def ray_batches(root: str, limit: int) -> tuple[int, int]:
    import ray

    dataset = ray.data.read_parquet(root)
    items = rows = 0
    for batch in dataset.iter_batches(batch_size=BATCH_ROWS, batch_format="numpy"):
        items += 1
        rows += _rows_of(batch)
    return items, rows


def ray_rows(root: str, limit: int) -> tuple[int, int]:
    import ray

    rows = 0
    for row in itertools.islice(ray.data.read_parquet(root).iter_rows(), limit):
        rows += row["id"] >= 0
    return rows, rows


def _hf_stream(root: str) -> Any:
    from datasets import load_dataset

    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs if f.endswith(".parquet"))
    return load_dataset("parquet", data_files={"train": files}, split="train", streaming=True)


def datasets_batches(root: str, limit: int) -> tuple[int, int]:
    items = rows = 0
    for batch in _hf_stream(root).with_format("numpy").iter(batch_size=BATCH_ROWS):
        items += 1
        rows += _rows_of(batch)
    return items, rows


def datasets_rows(root: str, limit: int) -> tuple[int, int]:
    rows = 0
    for row in itertools.islice(iter(_hf_stream(root)), limit):
        rows += row["id"] >= 0
    return rows, rows


# -- WebDataset -------------------------------------------------------------------------
def _shards(root: str) -> list[str]:
    return sorted(os.path.join(root, f) for f in os.listdir(root) if f.endswith(".tar"))


def _touch(sample: dict[str, Any]) -> int:
    return len(sample["jpg"])


def weft_webdataset(root: str, limit: int) -> tuple[int, int]:
    import weft.data as wd

    n = 0
    for sample in wd.from_webdataset(root):
        n += _touch(sample) > 0
    return n, n


def webdataset_package(root: str, limit: int) -> tuple[int, int]:
    import webdataset as wds

    n = 0
    for sample in wds.WebDataset(_shards(root), shardshuffle=False, empty_check=False):
        n += _touch(sample) > 0
    return n, n


def _grouped(members: Iterator[tuple[str, Any]], shard: str) -> Iterator[dict[str, Any]]:
    """Members to webdataset samples (the same grouping every contender does)."""
    sample: dict[str, Any] | None = None
    for name, data in members:
        match = _NAME.match(name)
        if match is None:
            continue
        key, ext = match.group(1), match.group(2).lower()
        if sample is None or sample["__key__"] != key:
            if sample is not None:
                yield sample
            sample = {"__key__": key, "__shard__": shard}
        sample[ext] = data
    if sample is not None:
        yield sample


def spdl_tar(root: str, limit: int) -> tuple[int, int]:
    """SPDL's tar iterator over each shard's bytes (its fastest input), grouped by key."""
    from spdl.io import iter_tarfile

    n = 0
    for shard in _shards(root):
        with open(shard, "rb") as f:
            data = f.read()
        for sample in _grouped(iter_tarfile(data), shard):
            n += _touch(sample) > 0
    return n, n


def tarfile_loop(root: str, limit: int) -> tuple[int, int]:
    """A plain stdlib tarfile stream loop with the same grouping: what Python itself costs."""
    import tarfile

    def members(tar: tarfile.TarFile) -> Iterator[tuple[str, bytes]]:
        for member in tar:
            tar.members = []  # type: ignore[attr-defined]
            if member.isfile():
                f = tar.extractfile(member)
                assert f is not None
                yield member.name, f.read()

    n = 0
    for shard in _shards(root):
        with open(shard, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tar:
            for sample in _grouped(members(tar), shard):
                n += _touch(sample) > 0
    return n, n


CONTENDERS: dict[str, Callable[[str, int], tuple[int, int]]] = {
    f.__name__: f for f in (pyarrow_scan, pyarrow_scan_numpy, weft_batches, weft_rows, ray_batches, ray_rows,
                            datasets_batches, datasets_rows, weft_webdataset, webdataset_package, spdl_tar,
                            tarfile_loop)
}


def main() -> None:
    name, root = sys.argv[1], sys.argv[2]
    limit = int(sys.argv[3]) if len(sys.argv) > 3 else sys.maxsize
    if name.startswith("ray"):
        import ray

        ray.init(num_cpus=len(os.sched_getaffinity(0)), include_dashboard=False, log_to_driver=False)
    start = time.perf_counter()
    items, rows = CONTENDERS[name](root, limit)
    seconds = time.perf_counter() - start
    print(json.dumps({"items": int(items), "rows": int(rows), "seconds": seconds}), flush=True)


if __name__ == "__main__":
    main()
