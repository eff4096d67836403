"""`weft runs export`: TensorBoard event files written by hand, read back; CSV and JSON."""

from __future__ import annotations

import csv
import json
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

import weft.train as wt
from weft.train._cli import register
from weft.train._tensorboard import crc32c, masked_crc32c


@pytest.fixture
def app() -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        """root"""

    register(root)
    return root


@pytest.fixture
def db(tmp_path: Path) -> tuple[str, dict[str, dict[str, list[tuple[int, float]]]]]:
    path = tmp_path / "weft.db"
    tracker = wt.Tracker(path)
    logged: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for name, scale in (("a/run", 1.0), ("b", 3.0)):
        with tracker.start_run(name, params={"scale": scale}) as run:
            for step in (0, 1, 2, 5, 300, 2**40):
                loss = scale / (step + 1) + 0.1
                run.log({"loss": loss, "lr": 0.01}, step=step)
                logged.setdefault(name, {}).setdefault("loss", []).append((step, loss))
            run.log({"loss": float("nan")}, step=2**40 + 1)
            run.log({"loss": float("-inf")}, step=2**40 + 2)
    tracker.close()
    return str(path), logged


def read_records(path: Path) -> list[bytes]:
    """TFRecord framing, checking both CRCs of each record."""
    data = path.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        assert struct.unpack("<I", data[pos + 8:pos + 12])[0] == masked_crc32c(header)
        body = data[pos + 12:pos + 12 + length]
        assert struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])[0] == masked_crc32c(body)
        out.append(body)
        pos += 16 + length
    return out


def test_crc32c_known_values() -> None:
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert crc32c(bytes(32)) == 0x8A9136AA     # RFC 3720 test vector (32 zero bytes)


def test_event_files_frame_and_encode(app: typer.Typer, db: tuple[str, dict], tmp_path: Path) -> None:  # type: ignore[type-arg]
    out = CliRunner().invoke(app, ["runs", "export", "a/run", "b", "--tensorboard", str(tmp_path / "tb"),
                                   "--db", db[0]])
    assert out.exit_code == 0, out.output
    folders = sorted(p.name for p in (tmp_path / "tb").iterdir())
    assert len(folders) == 2 and folders[0].startswith("a_run_") and folders[1].startswith("b_")
    (events,) = list((tmp_path / "tb" / folders[0]).iterdir())
    assert "tfevents" in events.name
    records = read_records(events)
    assert b"brain.Event:2" in records[0]
    assert len(records) == 1 + 6 * 2 + 2


def test_tensorboard_reads_the_same_values_steps_and_times(app: typer.Typer, db: tuple[str, dict],  # type: ignore[type-arg]
                                                           tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                                          reason="tensorboard is not installed")
    out = CliRunner().invoke(app, ["runs", "export", "b", "--tensorboard", str(tmp_path / "tb"), "--db", db[0]])
    assert out.exit_code == 0, out.output
    (folder,) = list((tmp_path / "tb").iterdir())
    assert len(list(folder.iterdir())) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reader = accumulator.EventAccumulator(str(folder), size_guidance={accumulator.SCALARS: 0}).Reload()
        tags = reader.Tags()["scalars"]
        scalars = {tag: [(e.step, e.value, e.wall_time) for e in reader.Scalars(tag)] for tag in tags}
    assert sorted(tags) == ["loss", "lr"]
    tracker = wt.Tracker(db[0])
    for key in ("loss", "lr"):
        series = tracker.metric("b", key)
        steps = [s for s, _, _ in scalars[key]]
        values = np.array([v for _, v, _ in scalars[key]], dtype=np.float32)
        times = [t for _, _, t in scalars[key]]
        assert steps == series.steps.tolist()
        np.testing.assert_array_equal(values, series.values.astype(np.float32))  # NaN and -inf included
        assert times == series.times.tolist()
    tracker.close()


def test_csv_and_json(app: typer.Typer, db: tuple[str, dict], tmp_path: Path) -> None:  # type: ignore[type-arg]
    out = CliRunner().invoke(app, ["runs", "export", "a/run", "--csv", str(tmp_path / "o.csv"), "--json",
                                   str(tmp_path / "o.json"), "--db", db[0]])
    assert out.exit_code == 0, out.output
    with open(tmp_path / "o.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    loss = [(int(r["step"]), float(r["value"])) for r in rows if r["metric"] == "loss"]
    assert loss[:-2] == db[1]["a/run"]["loss"]
    assert np.isnan(loss[-2][1]) and loss[-1][1] == -np.inf
    assert {r["run_name"] for r in rows} == {"a/run"} and len(rows) == 14
    (run,) = json.loads((tmp_path / "o.json").read_text())["runs"]
    assert run["name"] == "a/run" and run["params"] == {"scale": 1.0} and run["status"] == "finished"
    assert run["metrics"]["loss"]["values"][-2:] == ["NaN", "-Infinity"]
    assert run["metrics"]["loss"]["steps"][:4] == [0, 1, 2, 5]


def test_export_errors(app: typer.Typer, db: tuple[str, dict], tmp_path: Path) -> None:  # type: ignore[type-arg]
    out = CliRunner().invoke(app, ["runs", "export", "b", "--db", db[0]])
    assert out.exit_code == 2 and "--tensorboard DIR" in out.output
    out = CliRunner().invoke(app, ["runs", "export", "nope", "--csv", str(tmp_path / "x.csv"), "--db", db[0]])
    assert out.exit_code == 1 and "no run 'nope'" in out.output
