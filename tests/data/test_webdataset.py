"""from_webdataset: samples grouped by key, decoders, truncated shards, exact resume by
(shard, member offset), sharding and shuffling by shard."""

from __future__ import annotations

import io
import logging
import tarfile
from pathlib import Path

import numpy as np
import pytest
from format_files import add_members, ids, sample_members, write_shards
from resume_runs import run_with_stops

import weft.data as wd
from weft.errors import ConfigError, DataError, ResumeError

N = 20


@pytest.fixture
def shard_dir(tmp_path: Path) -> Path:
    write_shards(tmp_path / "shards", N)
    return tmp_path / "shards"


def test_samples_group_members_by_key(shard_dir: Path) -> None:
    samples = list(wd.from_webdataset(shard_dir))
    assert ids(samples) == list(range(N))
    first = samples[0]
    assert first == {"__key__": "sample000000", "__shard__": str(shard_dir / "shard-000000.tar"),
                     "cls": b"0", "txt": b"text of 0", "json": b'{"i": 0}'}


def test_keys_follow_webdataset_naming(tmp_path: Path) -> None:
    path = tmp_path / "mixed.tar"
    with tarfile.open(path, "w") as tar:
        add_members(tar, "dir/a", [("jpg", b"A"), ("seg.png", b"S"), ("CLS", b"1")])
        add_members(tar, "dir/b.x", [("txt", b"B")])  # key up to the first dot of the name: dir/b
        add_members(tar, "README", [])  # nothing to add: a member without a dot is not a sample
        info = tarfile.TarInfo("notes")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"n"))
        add_members(tar, "c", [("txt", b"C")])
    samples = list(wd.from_webdataset(path))
    assert [(s["__key__"], sorted(k for k in s if not k.startswith("__"))) for s in samples] == [
        ("dir/a", ["cls", "jpg", "seg.png"]), ("dir/b", ["x.txt"]), ("c", ["txt"])]


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_long_and_unicode_names_read_as_tarfile_reads_them(tmp_path: Path, fmt: int) -> None:
    path = tmp_path / "names.tar"
    # ustar splits the long name into prefix and name; GNU writes a long-name member; pax a path record
    deep = "d" * 90 + "/" + "k" * 60
    unicode = "clé/ü" if fmt == tarfile.PAX_FORMAT else "cle/u"
    with tarfile.open(path, "w", format=fmt) as tar:
        folder = tarfile.TarInfo("folder")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        add_members(tar, deep, [("txt", b"deep"), ("cls", b"1")])
        add_members(tar, unicode, [("json", b"{}")])
    samples = list(wd.from_webdataset(path))
    assert [(s["__key__"], sorted(k for k in s if not k.startswith("__"))) for s in samples] == [
        (deep, ["cls", "txt"]), (unicode, ["json"])]
    assert samples[0]["txt"] == b"deep"
    # resume in the middle: the second sample starts at its first header (extension headers included)
    pipe = wd.from_webdataset(path)
    it = iter(pipe)
    next(it)
    state = pipe.state_dict()
    pipe.close()
    resumed = wd.from_webdataset(path)
    resumed.load_state_dict(state)
    assert [s["__key__"] for s in resumed] == [unicode]


def test_patterns_braces_lists_and_nothing(shard_dir: Path, tmp_path: Path) -> None:
    assert ids(list(wd.from_webdataset(str(shard_dir / "shard-{000001..000002}.tar")))) == list(range(6, N))
    assert ids(list(wd.from_webdataset([shard_dir / "shard-000002.tar", shard_dir / "shard-000000.tar"]))) == \
        list(range(13, N)) + list(range(6))
    assert ids(list(wd.from_webdataset(str(shard_dir / "*.tar")))) == list(range(N))
    for missing in [tmp_path / "none", str(shard_dir / "shard-{000007..000009}.tar"), str(tmp_path / "*.tar")]:
        with pytest.raises(ConfigError, match="matches no file"):
            wd.from_webdataset(missing)
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"no \.tar / .* file"):
        wd.from_webdataset(tmp_path / "texts")


def test_decoders_are_opt_in(tmp_path: Path) -> None:
    from PIL import Image

    image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    png, jpg, npy = io.BytesIO(), io.BytesIO(), io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")
    Image.fromarray(image).save(jpg, format="JPEG")
    np.save(npy, np.eye(3))
    path = tmp_path / "typed.tar"
    with tarfile.open(path, "w") as tar:
        add_members(tar, "s0", [("png", png.getvalue()), ("jpg", jpg.getvalue()), ("npy", npy.getvalue()),
                                ("json", b'{"a": [1, 2]}'), ("txt", "héllo".encode()), ("cls", b" 7\n"),
                                ("bin", b"\x00\x01")])
    (sample,) = list(wd.from_webdataset(path, decode=True))
    assert np.array_equal(sample["png"], image)
    assert sample["jpg"].shape == (4, 5, 3) and sample["jpg"].dtype == np.uint8
    assert np.array_equal(sample["npy"], np.eye(3))
    assert sample["json"] == {"a": [1, 2]} and sample["txt"] == "héllo" and sample["cls"] == 7
    assert sample["bin"] == b"\x00\x01"
    (only,) = list(wd.from_webdataset(path, decode=[".cls", "json"]))
    assert only["cls"] == 7 and only["json"] == {"a": [1, 2]} and isinstance(only["png"], bytes)
    with pytest.raises(ConfigError, match=r"no decoder for 'mp3'.*\.map"):
        wd.from_webdataset(path, decode=["mp3"])
    with pytest.raises(ConfigError, match="list of extensions"):
        wd.from_webdataset(path, decode="cls")  # type: ignore[arg-type]


def test_a_sample_that_does_not_decode_is_named_or_skipped(tmp_path: Path) -> None:
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as tar:
        add_members(tar, "s0", [("cls", b"0")])
        add_members(tar, "s1", [("cls", b"one")])
        add_members(tar, "s2", [("cls", b"2")])
    with pytest.raises(DataError, match=r"member s1\.cls does not decode"):
        list(wd.from_webdataset(path, decode=True))
    pipe = wd.from_webdataset(path, decode=True, on_error="skip")
    assert [s["cls"] for s in pipe] == [0, 2]
    assert pipe.statistics().stages[0].extra["samples_skipped"] == 1


def test_a_repeated_extension_in_a_sample_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "dup.tar"
    with tarfile.open(path, "w") as tar:
        add_members(tar, "s0", [("cls", b"0"), ("cls", b"1")])
    with pytest.raises(DataError, match="two 'cls' members"):
        list(wd.from_webdataset(path))


def _truncations(data: bytes) -> dict[str, bytes]:
    """The ways a shard can end early: inside a member's data, at a header, inside a
    header, and without the end-of-archive blocks."""
    last_header = data.rfind(b"sample")  # the name field of some late member's header
    return {"mid-data": data[:1600], "at-header": data[:2048], "mid-header": data[:2048 + 100],
            "no-end-blocks": data[:last_header + 1024], "garbage-header": data[:2048] + b"x" * 512 + data[2560:]}


@pytest.mark.parametrize("cut", ["mid-data", "at-header", "mid-header", "no-end-blocks", "garbage-header"])
def test_a_truncated_shard_is_named_or_skipped(shard_dir: Path, cut: str, caplog: pytest.LogCaptureFixture) -> None:
    bad = shard_dir / "shard-000001.tar"
    bad.write_bytes(_truncations(bad.read_bytes())[cut])
    with pytest.raises(DataError, match=f"shard '.*{bad.name}'") as info:
        list(wd.from_webdataset(shard_dir))
    assert isinstance(info.value, ValueError)
    with caplog.at_level(logging.WARNING, logger="weft.data"):
        pipe = wd.from_webdataset(shard_dir, on_error="skip")
        got = ids(list(pipe))
    assert set(range(6)) | set(range(13, N)) <= set(got) <= set(range(N)) and len(got) == len(set(got))
    assert pipe.statistics().stages[0].skipped == 1
    assert bad.name in caplog.text


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("shuffled", [False, True])
def test_resume_at_random_points_is_exact(tmp_path: Path, compress: bool, shuffled: bool) -> None:
    write_shards(tmp_path, N, shards=4, compress=compress)

    def make() -> wd.Pipeline:
        pipe = wd.from_webdataset(tmp_path)
        return pipe.shuffle(buffer=4, seed=2) if shuffled else pipe

    full = ids(list(make()))
    assert sorted(full) == list(range(N))
    rng = np.random.default_rng(1)
    for _ in range(5):
        stops = [int(s) for s in rng.integers(0, 9, size=int(rng.integers(1, 4)))]
        assert ids(run_with_stops(make, stops, roundtrip="json")) == full, stops


def test_resume_seeks_to_the_member(shard_dir: Path) -> None:
    pipe = wd.from_webdataset(shard_dir)
    it = iter(pipe)
    head = [next(it) for _ in range(9)]
    state = pipe.state_dict()
    pipe.close()
    pos, (shard,), offset = state["stages"]["state"]
    assert (pos, shard) == (1, 1)
    with open(shard_dir / "shard-000001.tar", "rb") as f:
        f.seek(offset)
        assert tarfile.TarInfo.frombuf(f.read(512), "utf-8", "surrogateescape").name == "sample000009.cls"
    resumed = wd.from_webdataset(shard_dir)
    resumed.load_state_dict(state)
    assert ids(head) + ids(list(resumed)) == list(range(N))
    assert resumed.statistics().stages[0].extra["shards_started"] == 2, "shard 0 is never opened again"


def test_a_state_from_other_shards_is_refused(shard_dir: Path) -> None:
    pipe = wd.from_webdataset(shard_dir)
    it = iter(pipe)
    for _ in range(15):
        next(it)
    state = pipe.state_dict()
    pipe.close()
    fewer = wd.from_webdataset(shard_dir / "shard-000000.tar")
    fewer.load_state_dict(state)
    with pytest.raises(ResumeError, match="reads only 1"):
        list(fewer)


@pytest.mark.parametrize("shuffled", [False, True])
def test_shards_split_between_ranks_disjointly_and_completely(tmp_path: Path, shuffled: bool) -> None:
    write_shards(tmp_path, 40, shards=7)
    world = 3
    shares = []
    for rank in range(world):
        pipe = wd.from_webdataset(tmp_path)
        pipe = pipe.shuffle(buffer=5, seed=3).shard(rank, world) if shuffled else pipe.shard(rank, world)
        shares.append(ids(list(pipe)))
        shards = {s["__shard__"] for s in wd.from_webdataset(tmp_path).shard(rank, world)}
        assert len(shards) == len(range(rank, 7, world))
    assert sorted(i for share in shares for i in share) == list(range(40))


def test_shuffle_is_seeded_and_differs_per_epoch(tmp_path: Path) -> None:
    write_shards(tmp_path, 60, shards=6)
    pipe = wd.from_webdataset(tmp_path).shuffle(buffer=8, seed=5).epochs(2)
    both = ids(list(pipe))
    first, second = both[:60], both[60:]
    assert sorted(first) == sorted(second) == list(range(60))
    assert first != second and first != list(range(60))
    assert ids(list(wd.from_webdataset(tmp_path).shuffle(buffer=8, seed=5))) == first
    assert ids(list(wd.from_webdataset(tmp_path).shuffle(buffer=8, seed=6))) != first
    # the state of the buffer is keys (shard, offset), not samples
    it = iter(pipe)
    next(it)
    kept = pipe.state_dict()["stages"]["state"][2]
    pipe.close()
    assert len(kept) == 7 and all(len(key) == 2 and all(isinstance(v, int) for v in key) for key in kept)


def test_members_read_once_and_sample_members_stay_bytes(shard_dir: Path) -> None:
    samples = list(wd.from_webdataset(shard_dir).map(lambda s: s["txt"], workers=2, backend="thread"))
    assert samples == [data for i in range(N) for ext, data in sample_members(i) if ext == "txt"]
