"""from_parquet: Hive partitions, projection, filters, batches, exact resume, sharding,
unreadable files and bounded memory."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pc = pytest.importorskip("pyarrow.compute")
pq = pytest.importorskip("pyarrow.parquet")

from format_files import ids, parquet_files, write_parquet  # noqa: E402
from resume_runs import run_with_stops  # noqa: E402

import weft.data as wd  # noqa: E402
from weft.errors import ConfigError, DataError, ResumeError  # noqa: E402

N = 30


@pytest.fixture
def table_dir(tmp_path: Path) -> Path:
    return write_parquet(tmp_path / "table", N)


def test_rows_are_dicts_of_numpy_values_with_partition_fields(table_dir: Path) -> None:
    rows = list(wd.from_parquet(table_dir))
    assert sorted(ids(rows)) == list(range(N))
    first = rows[0]
    assert list(first) == ["i", "x", "emb", "name", "day", "part"]
    assert isinstance(first["i"], np.int64) and isinstance(first["x"], np.float32)
    assert isinstance(first["emb"], np.ndarray) and first["emb"].shape == (3,)
    assert first["name"] == f"item-{first['i']}"
    by_id = {int(r["i"]): r for r in rows}
    assert by_id[0]["part"] == 0 and by_id[0]["day"] == "2026-11-01"
    assert by_id[N - 1]["part"] == 2 and by_id[N - 1]["day"] == "2026-11-01"
    assert by_id[15]["part"] == 1 and by_id[15]["day"] == "2026-11-02"
    assert np.array_equal(by_id[7]["emb"], np.full(3, 7, dtype=np.float32))


def test_a_file_a_glob_a_list_and_nothing(table_dir: Path, tmp_path: Path) -> None:
    files = parquet_files(table_dir)
    assert ids(list(wd.from_parquet(files[0]))) == list(range(10))
    assert sorted(ids(list(wd.from_parquet(str(table_dir / "day=2026-11-01" / "**" / "*.parquet"))))) == \
        list(range(10)) + list(range(20, 30))
    # sorted paths: day=2026-11-01/part=0 (ids 0-9), day=2026-11-01/part=2 (20-29), day=2026-11-02/part=1 (10-19)
    assert ids(list(wd.from_parquet([files[2], files[0]]))) == list(range(10, 20)) + list(range(10))
    glob_rows = list(wd.from_parquet(str(table_dir / "*" / "*" / "*.parquet")))
    assert {r["part"] for r in glob_rows} == {0, 1, 2}, "partitions are read below the glob's root"
    for missing in [tmp_path / "nope", str(tmp_path / "nope" / "*.parquet"), [files[0], tmp_path / "x.parquet"]]:
        with pytest.raises(ConfigError, match="matches no file"):
            wd.from_parquet(missing)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "_SUCCESS").write_text("")
    with pytest.raises(ConfigError, match=r"'.*empty' matches no file.*no data file"):
        wd.from_parquet(tmp_path / "empty")


def test_projection_keeps_only_the_named_columns(table_dir: Path) -> None:
    rows = list(wd.from_parquet(table_dir, columns=["part", "i"]))
    assert all(list(r) == ["part", "i"] for r in rows)
    assert sorted(ids(rows)) == list(range(N))
    with pytest.raises(ConfigError, match=r"no column 'nope'.*'i', 'x', 'emb'"):
        wd.from_parquet(table_dir, columns=["i", "nope"])
    with pytest.raises(ConfigError, match="selects nothing"):
        wd.from_parquet(table_dir, columns=[])


@pytest.mark.parametrize(("spec", "expected"), [
    ({"part": 1}, range(10, 20)),
    ({"day": "2026-11-02"}, range(10, 20)),
    ({"part": [0, 2]}, [*range(10), *range(20, 30)]),
    ({"i": {">=": 5, "<": 9}}, range(5, 9)),
    ({"i": {"in": [1, 29]}, "x": {">": 0.0}}, [1, 29]),
    ({"i": {"not in": list(range(1, 30))}}, [0]),
    ({"part": 0, "i": {">": 7}}, [8, 9]),
])
def test_dict_filters(table_dir: Path, spec: dict[str, object], expected: range | list[int]) -> None:
    assert sorted(ids(list(wd.from_parquet(table_dir, filter=spec)))) == list(expected)


def test_expression_filter_and_pushdown(table_dir: Path) -> None:
    expression = (pc.field("i") >= 21) & (pc.field("part") == 2)
    pipe = wd.from_parquet(table_dir, filter=expression)
    assert sorted(ids(list(pipe))) == list(range(21, 30))
    source = pipe.statistics().stages[0]
    # of the 9 row groups only those of partition 2 that may hold i >= 21 are read:
    # [20, 24), [24, 28) and [28, 30); the scanner hands on only the matching rows
    assert source.extra["row_groups_started"] == 3, source
    assert source.extra["rows_read"] == 9, source


def test_filter_errors_name_the_problem(table_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"filter names column 'nope'"):
        wd.from_parquet(table_dir, filter={"nope": 1})
    with pytest.raises(ConfigError, match=r"unknown operator '=>'"):
        wd.from_parquet(table_dir, filter={"i": {"=>": 1}})
    with pytest.raises(ConfigError, match=r"'in' needs a list"):
        wd.from_parquet(table_dir, filter={"i": {"in": 3}})
    with pytest.raises(ConfigError, match="pyarrow expression or a non-empty dict"):
        wd.from_parquet(table_dir, filter="i > 3")
    with pytest.raises(ConfigError, match="does not fit"):
        wd.from_parquet(table_dir, filter=pc.field("nope") > 1)


def test_batches_are_columns_and_never_span_row_groups(table_dir: Path) -> None:
    batches = list(wd.from_parquet(table_dir, rows="batches", batch_rows=3, columns=["i", "emb", "part"]))
    assert all(set(b) == {"i", "emb", "part"} for b in batches)
    assert all(len(b["i"]) <= 3 for b in batches)
    assert all(b["emb"].shape == (len(b["i"]), 3) for b in batches)
    assert sorted(ids(batches)) == list(range(N))
    # row groups of 4 rows (the last of each file shorter): batches of 3 then 1, never 3 rows across two
    for b in batches:
        assert len({int(i) // 4 for i in b["i"] - b["i"][0] + (int(b["i"][0]) % 10)}) == 1
    per_row = list(wd.from_parquet(table_dir, rows="batches", batch_rows=3).map(lambda b: b["i"], workers=0))
    assert sorted(int(r) for b in per_row for r in b) == list(range(N))


@pytest.mark.parametrize("rows", ["dicts", "batches"])
@pytest.mark.parametrize("shuffled", [False, True])
def test_resume_at_random_points_is_exact(table_dir: Path, rows: str, shuffled: bool) -> None:
    def make() -> wd.Pipeline:
        pipe = wd.from_parquet(table_dir, rows=rows, batch_rows=3)
        return pipe.shuffle(buffer=5, seed=4) if shuffled else pipe

    full = ids(list(make()))
    assert sorted(full) == list(range(N))
    rng = np.random.default_rng(0)
    for _ in range(6):
        stops = [int(s) for s in rng.integers(0, 12, size=int(rng.integers(1, 4)))]
        assert ids(run_with_stops(make, stops, roundtrip="json")) == full, stops


def test_resume_reads_only_the_row_group_it_stopped_in(tmp_path: Path) -> None:
    root = write_parquet(tmp_path / "t", 400, files=4, row_group=10)
    pipe = wd.from_parquet(root)
    it = iter(pipe)
    head = [next(it) for _ in range(355)]
    state = pipe.state_dict()
    pipe.close()
    assert state["stages"]["state"][1:] == [[3, 5], 5], state  # file 3, row group 5, 5 rows handed on
    resumed = wd.from_parquet(root)
    resumed.load_state_dict(state)
    tail = list(resumed)
    assert sorted(ids(head + tail)) == list(range(400)) and len(tail) == 45
    source = resumed.statistics().stages[0]
    assert source.extra["rows_read"] == 50, "the 5 rows before the stop in its row group, nothing earlier"
    assert source.extra["row_groups_started"] == 5


def test_state_of_a_changed_dataset_is_refused(table_dir: Path, tmp_path: Path) -> None:
    pipe = wd.from_parquet(table_dir)
    it = iter(pipe)
    for _ in range(13):
        next(it)
    state = pipe.state_dict()
    pipe.close()
    other = wd.from_parquet(table_dir).shard(1, 2)
    other.load_state_dict(state)
    with pytest.raises(ResumeError, match="shard and shuffle settings changed"):
        list(other)


@pytest.mark.parametrize("shuffled", [False, True])
def test_shards_split_row_groups_disjointly_and_completely(table_dir: Path, shuffled: bool) -> None:
    world = 3
    shares = []
    for rank in range(world):
        pipe = wd.from_parquet(table_dir)
        pipe = pipe.shuffle(buffer=4, seed=9).shard(rank, world) if shuffled else pipe.shard(rank, world)
        shares.append(ids(list(pipe)))
    everything = sorted(i for share in shares for i in share)
    assert everything == list(range(N))
    assert all(share for share in shares)
    with pytest.raises(ConfigError, match="right after the source"):
        wd.from_parquet(table_dir).take(5).shard(0, 2)


def test_shuffle_permutes_row_groups_and_items_per_epoch(table_dir: Path) -> None:
    pipe = wd.from_parquet(table_dir).shuffle(buffer=6, seed=1)
    orders = []
    for epoch in range(2):
        pipe.set_epoch(epoch)
        orders.append(ids(list(pipe)))
    assert sorted(orders[0]) == sorted(orders[1]) == list(range(N))
    assert orders[0] != orders[1] and orders[0] != list(range(N))
    pipe.set_epoch(0)
    assert ids(list(pipe)) == orders[0]
    state_keys = None
    it = iter(pipe)
    next(it)
    state_keys = pipe.state_dict()["stages"]["state"][2]
    pipe.close()
    assert len(state_keys) == 5 and all(len(k) == 3 for k in state_keys), "keys of the buffer, not rows"


def _damage(path: Path, how: str) -> None:
    """Cut the end off, or write noise over the pages (the footer stays whole, so only
    decoding fails) or over the footer's metadata (the magic bytes stay)."""
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(data[:-30]))
        return
    footer = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    start, end = (4, footer) if how == "corrupt pages" else (footer, len(data) - 8)
    data[start:end] = np.random.default_rng(0).integers(0, 256, size=end - start, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncated", "corrupt pages", "corrupt footer"])
@pytest.mark.parametrize("which", [0, 1])
def test_an_unreadable_file_is_named_or_skipped(tmp_path: Path, damage: str, which: int,
                                                caplog: pytest.LogCaptureFixture) -> None:
    root = write_parquet(tmp_path / "t", N, row_group=2)
    bad = parquet_files(root)[which]
    k = int(bad.stem.split("-")[1])  # data-00k.parquet holds ids [10k, 10k + 10)
    _damage(bad, damage)
    with pytest.raises(DataError, match=f"cannot read Parquet file '.*{bad.name}'") as info:
        list(wd.from_parquet(root))
    assert isinstance(info.value, ValueError)
    with caplog.at_level(logging.WARNING, logger="weft.data"):
        pipe = wd.from_parquet(root, on_error="skip")
        got = ids(list(pipe))
    others = set(range(N)) - set(range(10 * k, 10 * k + 10))
    assert len(got) == len(set(got)) and others <= set(got) <= set(range(N))
    if damage != "corrupt pages":
        assert set(got) == others
    assert pipe.statistics().stages[0].skipped == 1
    assert bad.name in caplog.text


def test_memory_stays_a_few_row_groups_whatever_the_file_size(tmp_path: Path) -> None:
    rows, group = 3_200_000, 20_000  # 51 MB of values in 160 row groups of 0.3 MB
    table = pa.table({"a": np.arange(rows, dtype=np.int64), "b": np.ones(rows, dtype=np.float64)})
    path = tmp_path / "big.parquet"
    pq.write_table(table, path, row_group_size=group, compression="none")
    del table
    base = pa.total_allocated_bytes()
    peak = 0
    count = 0
    for batch in wd.from_parquet(path, rows="batches"):
        count += len(batch["a"])
        peak = max(peak, pa.total_allocated_bytes() - base)
    assert count == rows
    # the scanner reads a few row groups and batches ahead (about 5 MB here), never the file
    assert peak < rows * 16 / 3, f"peak {peak / 2**20:.1f} MB of Arrow memory for a {rows * 16 / 2**20:.0f} MB file"


def test_import_weft_data_does_not_import_pyarrow() -> None:
    code = "import sys, weft.data; print('pyarrow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


@pytest.mark.skipif(not sysconfig.get_config_var("Py_GIL_DISABLED"), reason="a build with the GIL")
def test_reading_parquet_leaves_the_gil_off(table_dir: Path) -> None:
    code = ("import sys, weft.data as wd; n = sum(1 for _ in wd.from_parquet(sys.argv[1])); "
            "print(n, sys._is_gil_enabled())")
    # PYTHON_GIL=0 would keep the GIL off whatever pyarrow declares: leave the default
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}
    out = subprocess.run([sys.executable, "-c", code, str(table_dir)], capture_output=True, text=True,
                         check=True, timeout=120, env=env)
    assert out.stdout.split() == [str(N), "False"], out.stderr


def test_repr_names_the_source(table_dir: Path) -> None:
    pipe = wd.from_parquet(table_dir, rows="batches").shuffle(buffer=8, seed=2).shard(0, 2)
    assert repr(pipe).startswith(f"Pipeline(parquet({str(table_dir)!r}, rows='batches') -> shuffle(seed=2)"
                                 " -> shard(0, 2)")
    with pytest.raises(TypeError, match="stream"):
        len(pipe)
