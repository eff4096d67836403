"""Sources: what each yields, sharding, and JSON Lines resume by seeking."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

import weft.data as wd
from weft.errors import ConfigError, ResumeError


def test_from_iterable_sequence_and_stream() -> None:
    assert list(wd.from_iterable(["a", "b", "c"])) == ["a", "b", "c"]
    assert list(wd.from_iterable(x * x for x in range(4))) == [0, 1, 4, 9]
    assert list(wd.from_iterable({"k": 1, "j": 2})) == ["k", "j"]
    with pytest.raises(ConfigError, match="string"):
        wd.from_iterable("abc")
    with pytest.raises(ConfigError, match="iterable"):
        wd.from_iterable(3)  # type: ignore[arg-type]


def test_one_shot_iterator_cannot_be_rewound() -> None:
    gen = iter(range(10))
    pipe = wd.from_iterable(gen)
    it = iter(pipe)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    with pytest.warns(RuntimeWarning, match="one-shot iterator"):
        state = pipe.state_dict()
    del it
    other = wd.from_iterable(iter(range(10)))
    other.load_state_dict(state)
    with pytest.raises(ResumeError, match="one-shot iterator"):
        list(other)
    pipe.load_state_dict(state)  # the same iterator, in this process: it goes on from item 3
    assert list(pipe) == [3, 4, 5, 6, 7, 8, 9]


def test_a_generator_is_not_silently_empty_the_second_time() -> None:
    pipe = wd.from_iterable(x * 2 for x in range(10)).batch(4)
    assert len(list(pipe)) == 3
    with pytest.raises(ConfigError, match=r"one-shot iterator.*already took 10 items.*cannot start over"):
        list(pipe)
    with pytest.raises(ConfigError, match="another pass or epoch"):
        list(wd.from_iterable(x for x in range(5)).epochs(2))
    again = wd.from_iterable(Restartable(5)).epochs(2)
    assert list(again) == [0, 1, 2, 3, 4] * 2, "an object whose __iter__ starts over reads twice"


class Restartable:
    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self):  # type: ignore[no-untyped-def]
        return (i for i in range(self.n))


def test_state_dict_of_a_one_shot_source_says_so_when_saved() -> None:
    pipe = wd.from_iterable(x for x in range(10))
    it = iter(pipe)
    next(it)
    with pytest.warns(RuntimeWarning, match="one-shot iterator.*after a restart.*load_state_dict fails"):
        pipe.state_dict()
    pipe.close()
    reiterable = wd.from_iterable(Restartable(10))
    list(reiterable)
    reiterable.state_dict()  # no warning (warnings are errors in this suite)


def test_paths_that_match_nothing_are_config_errors_naming_them(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    cases = [
        (lambda: wd.from_files(missing / "*.npy"), "from_files"),
        (lambda: wd.from_files(tmp_path), "from_files"),  # a directory, not a pattern
        (lambda: wd.from_npy(missing / "x.npy"), "from_npy"),
        (lambda: wd.from_jsonl(missing / "x.jsonl"), "from_jsonl"),
        (lambda: wd.from_webdataset(missing / "*.tar"), "from_webdataset"),
    ]
    for make, source in cases:
        with pytest.raises(ConfigError, match=f"{source}: '.*' matches no file") as info:
            make()
        assert str(tmp_path) in str(info.value)
    with pytest.raises(ConfigError, match=r"pattern such as '.*\*\*.*'"):
        wd.from_files(tmp_path)
    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "notes.txt").write_text("no images here")
    with pytest.raises(ConfigError, match=r"from_image_folder: .* hold no file ending in \.jpg"):
        wd.from_image_folder(tmp_path)
    assert isinstance(info.value, ValueError)


def test_pad_collate_passed_uncalled_says_call_it() -> None:
    with pytest.raises(ConfigError, match=r"call it, collate=pad_collate\(\)"):
        wd.from_range(4).batch(2, collate=wd.pad_collate)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="collate must be a function"):
        wd.from_range(4).batch(2, collate=3)  # type: ignore[arg-type]
    padded = list(wd.from_iterable([[1], [2, 3]]).batch(2, collate=wd.pad_collate()))
    assert padded[0].tolist() == [[1, 0], [2, 3]]


def test_len_of_a_pipeline_where_it_is_known() -> None:
    assert len(wd.from_range(10)) == 10
    assert len(wd.from_range(10).shuffle(seed=0).shard(1, 3).map(str, workers=0).batch(2)) == 2
    assert len(wd.from_array(np.zeros((7, 2))).batch(3, drop_last=True).prefetch(2)) == 2
    assert len(wd.from_range(10).skip(3).take(5).epochs(3)) == 15
    for unknown, why in [(wd.from_range(10).filter(bool), "filter"),
                         (wd.from_iterable(iter([1, 2])), "stream"),
                         (wd.from_range(3).map(str, on_error="skip"), "on_error='skip'"),
                         (wd.from_range(3).epochs(None), "unbounded")]:
        with pytest.raises(TypeError, match=why):
            len(unknown)
        assert unknown  # a pipeline is truthy even without a length


def test_progress_total_comes_from_len() -> None:
    from rich.console import Console

    console = Console(file=io.StringIO(), force_terminal=False, width=120)
    pipe = wd.from_range(96).batch(8)
    assert len(list(wd.progress(pipe, console=console))) == 12
    assert "12/12" in console.file.getvalue()  # type: ignore[attr-defined]


def test_repr_shows_the_stages() -> None:
    pipe = (wd.from_range(40).shuffle(seed=3).map(str, workers=3, backend="thread", ordered=False)
            .filter(bool).batch(6, drop_last=True).prefetch(2).epochs(2))
    assert repr(pipe) == ("Pipeline(range[40] -> shuffle(seed=3) -> map(str, workers=3, backend='thread', "
                          "ordered=False) -> filter(bool) -> batch(6, drop_last=True) -> prefetch(2) -> epochs(2))")
    assert repr(wd.from_iterable(x for x in "ab")) == "Pipeline(generator (one-shot stream))"


def test_from_range_matches_range() -> None:
    assert list(wd.from_range(5)) == [0, 1, 2, 3, 4]
    assert list(wd.from_range(2, 11, 3)) == [2, 5, 8]


def test_from_array_and_npy_rows(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.float32).reshape(6, 2)
    rows = list(wd.from_array(arr))
    assert len(rows) == 6 and np.array_equal(rows[4], arr[4])
    path = tmp_path / "x.npy"
    np.save(path, arr)
    batches = list(wd.from_npy(path).batch(4))
    assert np.array_equal(np.concatenate(batches), arr)
    first = next(iter(wd.from_npy(path)))
    assert isinstance(first.base, np.memmap) or isinstance(first, np.memmap)  # mapped, not loaded
    with pytest.raises(ConfigError, match="NumPy array"):
        wd.from_array([1, 2])


def test_from_files_sorted_paths_or_bytes(tmp_path: Path) -> None:
    for name in ["b.txt", "a.txt", "c.bin"]:
        (tmp_path / name).write_bytes(name.encode())
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.txt").write_bytes(b"d")
    assert list(wd.from_files(tmp_path / "*.txt")) == [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]
    assert list(wd.from_files(tmp_path / "*.txt", read=True)) == [b"a.txt", b"b.txt"]
    assert len(list(wd.from_files(str(tmp_path / "**" / "*.txt")))) == 3


def test_from_image_folder_pairs_and_classes(tmp_path: Path) -> None:
    for cls, n in [("dog", 2), ("cat", 3)]:
        (tmp_path / cls).mkdir()
        for i in range(n):
            (tmp_path / cls / f"{i}.jpg").write_bytes(b"")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    pipe = wd.from_image_folder(tmp_path)
    assert pipe.classes == ["cat", "dog"]
    items = list(pipe.shuffle(seed=0))
    assert sorted(items) == sorted([(str(tmp_path / "cat" / f"{i}.jpg"), 0) for i in range(3)]
                                   + [(str(tmp_path / "dog" / f"{i}.jpg"), 1) for i in range(2)])
    assert pipe.map(lambda x: x).classes == ["cat", "dog"]
    with pytest.raises(AttributeError, match="classes"):
        _ = wd.from_range(3).classes
    with pytest.raises(ConfigError, match="no such directory"):
        wd.from_image_folder(tmp_path / "missing")


@pytest.mark.parametrize("shuffled", [False, True])
def test_shards_partition_the_source(shuffled: bool) -> None:
    world = 3
    parts = []
    for rank in range(world):
        pipe = wd.from_range(20)
        pipe = pipe.shuffle(seed=5).shard(rank, world) if shuffled else pipe.shard(rank, world)
        parts.append(list(pipe))
    assert sorted(x for p in parts for x in p) == list(range(20))
    assert all(len(p) in (6, 7) for p in parts)
    with pytest.raises(ConfigError, match="rank"):
        wd.from_range(3).shard(3, 3)


def test_stream_shard_and_shard_after_batch_is_refused() -> None:
    parts = [list(wd.from_iterable(x for x in range(10)).shard(r, 2)) for r in range(2)]
    assert parts == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]
    with pytest.raises(ConfigError, match="shard before batch"):
        wd.from_iterable(x for x in range(10)).batch(2).shard(0, 2)


def _write_jsonl(path: Path, n: int) -> None:
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"i": i, "text": "x" * (i % 7)}) + "\n")
            if i == 10:
                f.write("\n")  # blank lines are skipped


def test_jsonl_streams_records(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    _write_jsonl(path, 50)
    assert [r["i"] for r in wd.from_jsonl(path)] == list(range(50))
    with pytest.raises(ConfigError, match="no such file"):
        wd.from_jsonl(tmp_path / "missing.jsonl")


def test_jsonl_resume_seeks_instead_of_rereading(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    _write_jsonl(path, 1000)
    pipe = wd.from_jsonl(path)
    it = iter(pipe)
    head = [next(it)["i"] for _ in range(600)]
    state = pipe.state_dict()
    del it
    line, offset = state["stages"]["state"]
    assert offset == len(b"".join(path.read_bytes().splitlines(keepends=True)[:line]))
    resumed = wd.from_jsonl(path)
    resumed.load_state_dict(state)
    tail = [r["i"] for r in resumed]
    assert head + tail == list(range(1000))
    source = resumed.statistics().stages[0]
    assert source.extra["lines_read"] == 400  # the first 600 records (and a blank line) were never read again


def test_jsonl_rejects_an_offset_past_the_end(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    _write_jsonl(path, 5)
    pipe = wd.from_jsonl(path)
    pipe.load_state_dict({"version": 1, "epoch": 0, "end": 1, "finished": False,
                          "stages": {"stage": "source", "state": [3, 10**9]}})
    with pytest.raises(ResumeError, match="past the end"):
        list(pipe)


def test_jsonl_bad_line_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"ok": 1}\n{not json\n')
    with pytest.raises(ConfigError, match="line 2 is not valid JSON") as info:
        list(wd.from_jsonl(path))
    assert isinstance(info.value, ValueError), "still a ValueError for callers that catch that"
