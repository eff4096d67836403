"""shard("auto"): rank and world size from torch.distributed, Ray Train or RANK/WORLD_SIZE;
the shares of all ranks are disjoint and together hold every item once per epoch."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

import weft.data as wd
from weft.data._shard import auto_placement
from weft.errors import ConfigError

N = 50


class Stream:
    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(range(self.n))


SOURCES: dict[str, Callable[[], wd.Pipeline]] = {
    "random-shuffled": lambda: wd.from_range(N).shuffle(seed=5),
    "stream-shuffled": lambda: wd.from_iterable(Stream(N)).shuffle(buffer=8, seed=5),
    "stream": lambda: wd.from_iterable(Stream(N)),
}


@pytest.fixture(autouse=True)
def no_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test says itself which launcher it plays."""
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delitem(sys.modules, "ray.train", raising=False)


@pytest.mark.parametrize("source", sorted(SOURCES))
@pytest.mark.parametrize("world", [1, 3, 4])
def test_shares_are_disjoint_and_cover_every_item_each_epoch(source: str, world: int,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    epochs: list[list[int]] = [[], []]
    for rank in range(world):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", str(world))
        items = list(SOURCES[source]().shard("auto").epochs(2))
        half = len(items) // 2  # a rank's share has the same size in every epoch
        epochs[0].extend(items[:half])
        epochs[1].extend(items[half:])
    for epoch in epochs:
        assert sorted(epoch) == list(range(N))  # disjoint shares, together every item once


def test_without_a_launcher_it_is_the_whole_source() -> None:
    assert auto_placement()[:2] == (0, 1)
    assert list(wd.from_range(7).shard("auto")) == list(range(7))


def test_ray_train_context_comes_before_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    class Context:
        def get_world_rank(self) -> int:
            return 2

        def get_world_size(self) -> int:
            return 3

    train = types.ModuleType("ray.train")
    train.get_context = Context  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ray.train", train)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert auto_placement() == (2, 3, "Ray Train's context")
    assert list(wd.from_range(9).shard("auto")) == [2, 5, 8]


def test_outside_a_ray_train_worker_the_environment_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_session() -> None:
        raise RuntimeError("not in a Ray Train session")

    train = types.ModuleType("ray.train")
    train.get_context = no_session  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ray.train", train)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert auto_placement() == (1, 2, "RANK/WORLD_SIZE")


def test_torch_process_group_comes_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    dist = pytest.importorskip("torch.distributed", reason="torch is not installed for this interpreter")
    if not dist.is_available():
        pytest.skip("this torch build has no torch.distributed")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")  # a process group says otherwise, and wins
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        assert auto_placement() == (0, 1, "torch.distributed")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(("env", "named"), [
    ({"RANK": "1"}, "WORLD_SIZE"),
    ({"RANK": "x", "WORLD_SIZE": "2"}, "'x'"),
    ({"RANK": "2", "WORLD_SIZE": "2"}, "rank 2 of world size 2"),
])
def test_bad_environment_names_the_values(env: dict[str, str], named: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match=named):
        wd.from_range(4).shard("auto")


def test_auto_with_a_world_size_is_refused() -> None:
    with pytest.raises(ConfigError, match="world_size=2"):
        wd.from_range(4).shard("auto", 2)
    with pytest.raises(ConfigError, match="'first'"):
        wd.from_range(4).shard("first", 2)
