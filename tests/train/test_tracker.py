"""Tracker: runs, params, metrics, queries; many threads and processes writing at once."""

from __future__ import annotations

import contextlib
import sqlite3
import threading

import numpy as np
import pytest

import train_workloads
import weft.exec
import weft.train as wt
from weft.errors import ConfigError, TrackerError


def test_runs_params_tags_metrics_artifacts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    tracker = wt.Tracker(tmp_path / "sub" / "weft.db")
    with tracker.start_run("baseline", params={"lr": 0.1, "layers": 2}, tags={"team": "a"}) as run:
        for step in range(10):
            assert run.log({"loss": 1.0 / (step + 1), "acc": step / 10}) == step
        run.log({"loss": 0.05}, step=20)
        run.log_params({"batch": 32})
        run.set_tags({"note": "first"})
        artifact = tmp_path / "model.safetensors"
        artifact.write_bytes(b"x")
        run.log_artifact(artifact)
    info = tracker.run("baseline")
    assert info.status == "finished" and info.ended is not None
    assert info.params == {"lr": 0.1, "layers": 2, "batch": 32}
    assert info.tags == {"team": "a", "note": "first"}
    assert info.summary == {"loss": 0.05, "acc": 0.9}
    assert info.artifacts == {"model.safetensors": str(artifact.resolve())}
    loss = tracker.metric(info.id, "loss")
    assert isinstance(loss.values, np.ndarray) and loss.steps.tolist() == [*range(10), 20]
    assert loss.to_lists()["values"][:2] == [1.0, 0.5]
    assert sorted(tracker.metrics(info.id)) == ["acc", "loss"]
    assert tracker.run(info.id[:5]).id == info.id
    with pytest.raises(TrackerError, match="nope"):
        tracker.run("nope")
    tracker.close()
    with pytest.raises(TrackerError, match="closed"):
        tracker.runs()


def test_failed_run_and_best_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    tracker = wt.Tracker(tmp_path / "weft.db")
    finals = {"a": 0.5, "b": 0.2, "c": 0.9}
    for name, final in finals.items():
        with tracker.start_run(name) as run:
            run.log({"loss": 0.1 if name == "c" else 1.0})  # c has the lowest minimum
            run.log({"loss": final})
    with pytest.raises(RuntimeError), tracker.start_run("broken"):
        raise RuntimeError("diverged")
    assert tracker.run("broken").status == "failed"
    best = tracker.best_run("loss")
    assert best is not None and best[0].name == "b" and best[1] == 0.2
    best_min = tracker.best_run("loss", reduce="min")
    assert best_min is not None and best_min[0].name == "c"
    best_max = tracker.best_run("loss", mode="max")
    assert best_max is not None and best_max[0].name == "c"
    assert tracker.best_run("missing") is None
    assert [r.name for r in tracker.runs()] == ["broken", "c", "b", "a"]
    assert [r.name for r in tracker.runs(status="failed")] == ["broken"]
    with pytest.raises(ConfigError):
        tracker.best_run("loss", mode="up")  # type: ignore[arg-type]
    tracker.close()


def test_resume_run_continues_steps(tmp_path) -> None:  # type: ignore[no-untyped-def]
    tracker = wt.Tracker(tmp_path / "weft.db")
    run = tracker.start_run("long")
    run.log({"loss": 1.0})
    run.log({"loss": 0.9})
    again = tracker.resume_run("long")
    assert again.log({"loss": 0.8}) == 2
    assert tracker.metric("long", "loss").steps.tolist() == [0, 1, 2]
    tracker.close()


def test_wal_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    tracker = wt.Tracker(tmp_path / "weft.db")
    tracker.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "weft.db")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_threads_write_at_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    tracker = wt.Tracker(tmp_path / "weft.db")
    run = tracker.start_run("threads")
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            barrier.wait()
            for i in range(250):
                run.log({f"t{k}": float(i)}, step=i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    series = tracker.metrics("threads")
    assert len(series) == 8 and all(len(s.values) == 250 for s in series.values())
    assert tracker.statistics().rows_written == 2000 + 1  # the metrics and the run's own row
    tracker.close()


@pytest.mark.timeout(360)  # 4 worker processes x 1,000 transactions: ~5 s idle, bounded when loaded
def test_four_processes_times_1000_metrics(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = str(tmp_path / "weft.db")
    wt.Tracker(db).close()  # create the schema once (workers also could: CREATE IF NOT EXISTS)
    with weft.exec.create("process", workers=4) as ex:
        futures = [ex.submit(train_workloads.log_metrics, db, worker, 1000) for worker in range(4)]
        assert [f.result(timeout=300) for f in futures] == [1000] * 4
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 4000
        per_run = conn.execute("SELECT COUNT(DISTINCT step) FROM metrics GROUP BY run_id").fetchall()
    assert sorted(n for (n,) in per_run) == [1000] * 4
    tracker = wt.Tracker(db)
    assert {r.status for r in tracker.runs()} == {"finished"}
    tracker.close()


def test_bad_values_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    tracker = wt.Tracker(tmp_path / "weft.db")
    run = tracker.start_run()
    with pytest.raises(ConfigError, match="numbers"):
        run.log({"loss": "high"})  # type: ignore[dict-item]
    with pytest.raises(ConfigError):
        run.log({})
    with pytest.raises(ConfigError, match="JSON"):
        tracker.start_run(params={"f": object()})
    tracker.close()
