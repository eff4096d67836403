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


def test_nan_and_inf_are_stored_faithfully(tmp_path) -> None:  # type: ignore[no-untyped-def]
    tracker = wt.Tracker(tmp_path / "weft.db")
    with tracker.start_run("diverged") as run:
        run.log({"loss": 1.0})
        run.log({"loss": float("nan")})
        run.log({"loss": float("inf"), "grad": float("-inf")})
    loss = tracker.metric("diverged", "loss")
    assert loss.values[0] == 1.0 and np.isnan(loss.values[1]) and loss.values[2] == np.inf
    assert tracker.metric("diverged", "grad").values.tolist() == [-np.inf]
    info = tracker.run("diverged")
    assert info.summary["loss"] == np.inf and info.summary["grad"] == -np.inf
    with tracker.start_run("nan-last") as run:
        run.log({"loss": 0.5})
        run.log({"loss": float("nan")})
    assert np.isnan(tracker.run("nan-last").summary["loss"])
    best = tracker.best_run("loss", reduce="min")
    assert best is not None and best[0].name == "nan-last" and best[1] == 0.5
    tracker.close()


def test_failed_run_records_its_exception(tmp_path) -> None:  # type: ignore[no-untyped-def]
    tracker = wt.Tracker(tmp_path / "weft.db")
    with pytest.raises(ValueError), tracker.start_run("broken"):
        raise ValueError("feature overflow at step 7")
    info = tracker.run("broken")
    assert info.status == "failed"
    assert info.error is not None and "ValueError: feature overflow at step 7" in info.error
    assert "Traceback" in info.error
    with tracker.start_run("fine"):
        pass
    assert tracker.run("fine").error is None
    tracker.close()


def test_killed_writer_reads_as_crashed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    db = tmp_path / "weft.db"
    code = ("import sys, os, signal; import weft.train as wt; t = wt.Tracker(sys.argv[1]); "
            "r = t.start_run('victim'); r.log({'loss': 1.0}); os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run([sys.executable, "-c", code, str(db)], timeout=60, capture_output=True)
    assert proc.returncode == -9, proc.stderr
    tracker = wt.Tracker(db)
    alive = tracker.start_run("alive")
    assert tracker.run("victim").status == "crashed"
    assert [r.name for r in tracker.runs(status="crashed")] == ["victim"]
    assert [r.name for r in tracker.runs(status="running")] == ["alive"]
    alive.finish()
    resumed = tracker.resume_run("victim")  # this process writes it now
    assert tracker.run("victim").status == "running"
    resumed.finish()
    tracker.close()


def test_runs_list_their_artifacts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    tracker = wt.Tracker(tmp_path / "weft.db")
    with tracker.start_run("with-files") as run:
        (tmp_path / "a.bin").write_bytes(b"a")
        run.log_artifact(tmp_path / "a.bin")
        run.log_artifact(tmp_path / "a.bin", name="copy")
    (listed,) = tracker.runs()
    assert listed.artifacts == tracker.run("with-files").artifacts
    assert listed.artifacts == {"a.bin": str((tmp_path / "a.bin").resolve()),
                                "copy": str((tmp_path / "a.bin").resolve())}
    tracker.close()


def test_old_database_is_migrated(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.executescript("""
            CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL,
                created REAL NOT NULL, ended REAL, params TEXT NOT NULL DEFAULT '{}', tags TEXT NOT NULL DEFAULT '{}');
            CREATE TABLE metrics (run_id TEXT NOT NULL REFERENCES runs(id), key TEXT NOT NULL, step INTEGER NOT NULL,
                value REAL NOT NULL, time REAL NOT NULL);
            CREATE INDEX metrics_by_run ON metrics(run_id, key, step);
            CREATE TABLE artifacts (run_id TEXT NOT NULL REFERENCES runs(id), name TEXT NOT NULL,
                path TEXT NOT NULL, time REAL NOT NULL);
            INSERT INTO runs VALUES ('abc123', 'old', 'finished', 1.0, 2.0, '{"lr": 0.1}', '{}');
        """)
        conn.executemany("INSERT INTO metrics VALUES ('abc123', 'loss', ?, ?, ?)",
                         [(s, 10.0 - s if s != 50 else -3.0, 100.0 + s) for s in range(300)])
        conn.commit()
    tracker = wt.Tracker(db)
    info = tracker.run("old")
    assert info.summary == {"loss": 10.0 - 299} and info.params == {"lr": 0.1} and info.error is None
    run = tracker.resume_run("old")
    run.log({"loss": float("nan")})  # the old NOT NULL column is gone
    assert np.isnan(tracker.metric("old", "loss").values[-1])
    with contextlib.closing(sqlite3.connect(db)) as conn:
        blocks = conn.execute("SELECT block, count, min_step, min_value, max_step FROM metric_blocks "
                              "WHERE width = 256 ORDER BY block").fetchall()
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert blocks == [(0, 256, 255, -245.0, 0), (1, 45, 299, -289.0, 256)]
    assert {"metrics_by_run", "runs_by_created", "summary_by_key"} <= indexes
    run.finish()
    tracker.close()


def test_summary_and_blocks_follow_every_point(tmp_path) -> None:  # type: ignore[no-untyped-def]
    tracker = wt.Tracker(tmp_path / "weft.db")
    run = tracker.start_run("r")
    rng = np.random.default_rng(0)
    values = rng.normal(size=600)
    values[[3, 77]] = np.nan
    for step, v in zip(rng.permutation(600), values, strict=True):  # steps out of order
        run.log({"x": float(v)}, step=int(step))
    with contextlib.closing(sqlite3.connect(tmp_path / "weft.db")) as conn:
        count, first, last, lo, hi = conn.execute(
            "SELECT count, first_step, last_step, min_value, max_value FROM metric_summary").fetchone()
        rows = conn.execute("SELECT block, count, min_value, max_value FROM metric_blocks WHERE width = 16 "
                            "ORDER BY block").fetchall()
    assert (count, first, last) == (600, 0, 599)
    assert lo == np.nanmin(values) and hi == np.nanmax(values)
    series = tracker.metric("r", "x")
    for block, n, bmin, bmax in rows:
        chunk = series.values[block * 16:(block + 1) * 16]
        assert n == len(chunk) and bmin == np.nanmin(chunk) and bmax == np.nanmax(chunk)
    run.finish()
    tracker.close()
