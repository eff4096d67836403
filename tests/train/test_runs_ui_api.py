"""The runs page's JSON API against a real server on 127.0.0.1 (port 0), and its pieces."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import weft.train as wt
from weft.errors import ConfigError
from weft.train._runs_ui._downsample import read_series
from weft.train._runs_ui._filter import FilterError, Keys, compile_filter
from weft.train._runs_ui._server import RunsPageServer


def make_db(path: Path) -> dict[str, str]:
    """Twelve runs with params, tags and metrics; one long history; one NaN; one failed run."""
    tracker = wt.Tracker(path)
    ids: dict[str, str] = {}
    for i in range(12):
        tags = {"baseline": True} if i < 3 else {"kind": "sweep"}
        with tracker.start_run(f"run-{i:02d}", params={"lr": 10.0 ** -(i % 4), "opt": ["adam", "sgd"][i % 2],
                                                       "layers": i}, tags=tags) as run:
            ids[run.name] = run.id
            for step in range(20):
                run.log({"loss": 1.0 / (step + 1) + i, "acc": step / 20 + i / 100})
    with tracker.start_run("long", params={"lr": 0.5}) as run:
        ids["long"] = run.id
        steps = np.arange(50_000)
        values = np.sin(steps / 500.0)
        values[31_337] = 40.0   # one spike a chart must keep
        values[12_345] = -40.0  # and one dip
        points = [("loss", int(s), float(v), 1_000.0 + s) for s, v in zip(steps, values, strict=True)]
        from weft.train._tracker_schema import write_points

        tracker._write(lambda db: write_points(db, run.id, points))
    with tracker.start_run("nan-run", params={"lr": 0.2}) as run:
        ids["nan-run"] = run.id
        run.log({"loss": 1.0})
        run.log({"loss": float("nan")})
        run.log({"loss": float("inf")})
    with contextlib.suppress(ValueError), tracker.start_run("broken", params={"lr": 0.3}) as run:
        ids["broken"] = run.id
        raise ValueError("diverged at step 3")
    tracker.close()
    return ids


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    path = tmp_path_factory.mktemp("runs-ui") / "weft.db"
    return path, make_db(path)


@pytest.fixture(scope="module")
def page(db: tuple[Path, dict[str, str]]) -> Iterator[httpx.Client]:
    with RunsPageServer(db[0], port=0) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        assert server.url.startswith("http://127.0.0.1:")
        yield client


def names(body: dict[str, object]) -> list[str]:
    return [r["name"] for r in body["runs"]]  # type: ignore[attr-defined, index]


def test_page_and_its_scripts_are_served_locally(page: httpx.Client) -> None:
    html = page.get("/")
    assert html.status_code == 200 and "weft runs" in html.text
    for src in ("static/app.js", "static/app.css", "static/vendor/uplot/uPlot.iife.min.js",
                "static/vendor/uplot/uPlot.min.css"):
        assert src in html.text
        assert page.get("/" + src).status_code == 200
    assert "http://" not in html.text and "https://" not in html.text  # nothing from the internet
    assert "https://" not in page.get("/static/app.js").text
    spec = page.get("/openapi.json").json()
    assert {"/api/runs", "/api/runs/{run_id}", "/api/keys", "/api/series", "/api/updates"} <= set(spec["paths"])
    assert page.get("/docs").status_code == 404  # Swagger UI would load from a CDN


def test_keys(page: httpx.Client) -> None:
    keys = page.get("/api/keys").json()
    assert keys["runs"] == 15
    assert [k["key"] for k in keys["params"]][:1] == ["lr"]
    assert {k["key"] for k in keys["metrics"]} == {"loss", "acc"}
    assert {k["key"]: k["runs"] for k in keys["tags"]} == {"baseline": 3, "kind": 9}


def test_runs_sorted_filtered_paginated(page: httpx.Client) -> None:
    body = page.get("/api/runs", params={"sort": "name", "order": "asc", "limit": 5}).json()
    assert body["total"] == 15 and names(body) == ["broken", "long", "nan-run", "run-00", "run-01"]
    body = page.get("/api/runs", params={"sort": "name", "order": "asc", "limit": 5, "offset": 5}).json()
    assert names(body) == [f"run-{i:02d}" for i in range(2, 7)]
    body = page.get("/api/runs", params={"filter": "lr < 0.01 and tag:baseline"}).json()
    assert names(body) == []  # the baseline runs have lr 1, 0.1 and 0.01
    body = page.get("/api/runs", params={"filter": "lr <= 0.01 and tag:baseline"}).json()
    assert names(body) == ["run-02"]
    body = page.get("/api/runs", params={"filter": "opt = adam and not tag:baseline", "sort": "param:layers",
                                         "order": "asc"}).json()
    assert names(body) == ["run-04", "run-06", "run-08", "run-10"]
    body = page.get("/api/runs", params={"filter": "metric:loss:min < 1 and layers >= 10", "sort": "metric:loss",
                                         "order": "desc"}).json()
    assert names(body) == []  # loss min of run i is about i + 0.05
    body = page.get("/api/runs", params={"filter": "metric:loss:min < 2", "sort": "metric:loss"}).json()
    assert names(body) == ["nan-run", "run-01", "run-00", "long"]  # by last loss: inf, 1.05, 0.05, sin(...)
    body = page.get("/api/runs", params={"filter": "name ~ RUN-1 or status = failed", "sort": "name",
                                         "order": "asc"}).json()
    assert names(body) == ["broken", "run-10", "run-11"]
    body = page.get("/api/runs", params={"filter": 'param:opt = "sgd" and (layers < 3 or layers > 9)',
                                         "sort": "duration"}).json()
    assert sorted(names(body)) == ["run-01", "run-11"]
    # missing values sort last in both directions
    for order in ("asc", "desc"):
        body = page.get("/api/runs", params={"sort": "param:layers", "order": order, "limit": 100}).json()
        assert names(body)[-3:] and all(r["params"].get("layers") is None for r in body["runs"][-3:])


def test_run_rows_carry_summaries_and_nonfinite_values(page: httpx.Client, db: tuple[Path, dict[str, str]]) -> None:
    body = page.get("/api/runs", params={"ids": db[1]["nan-run"]}).json()
    (run,) = body["runs"]
    assert run["metrics"]["loss"] == {"count": 3, "first_step": 0, "last_step": 2, "last_time": run["metrics"]["loss"]
                                      ["last_time"], "last": "Infinity", "min": 1.0, "max": "Infinity"}
    assert run["status"] == "finished" and run["params"] == {"lr": 0.2}


def test_one_run(page: httpx.Client, db: tuple[Path, dict[str, str]]) -> None:
    run = page.get(f"/api/runs/{db[1]['broken']}").json()
    assert run["status"] == "failed" and "ValueError: diverged at step 3" in run["error"]
    run = page.get(f"/api/runs/{db[1]['run-03']}").json()
    assert run["params"] == {"lr": 0.001, "opt": "sgd", "layers": 3} and run["tags"] == {"kind": "sweep"}
    assert sorted(run["metrics"]) == ["acc", "loss"] and run["metrics"]["loss"]["count"] == 20
    assert run["artifacts"] == [] and run["error"] is None
    missing = page.get("/api/runs/nothing")
    assert missing.status_code == 404 and "no run 'nothing'" in missing.json()["error"]


def test_series_downsampled_keeps_extremes(page: httpx.Client, db: tuple[Path, dict[str, str]]) -> None:
    body = page.get("/api/series", params={"runs": db[1]["long"], "keys": "loss"}).json()
    (series,) = body["series"]
    assert series["points"] == 50_000 and series["downsampled"]
    assert 500 <= len(series["steps"]) <= 1500
    assert max(series["values"]) == 40.0 and min(series["values"]) == -40.0
    assert series["steps"] == sorted(series["steps"]) and series["steps"][0] < 100 and series["steps"][-1] > 49_900
    assert body["cursor"] > 0
    zoom = page.get("/api/series", params={"runs": db[1]["long"], "keys": "loss", "from": 31_000,
                                           "to": 31_600}).json()["series"][0]
    assert zoom["steps"] == list(range(31_000, 31_601)) and not zoom["downsampled"]
    short = page.get("/api/series", params={"runs": f"{db[1]['run-00']},{db[1]['nan-run']}",
                                            "keys": "loss,acc"}).json()["series"]
    assert [(s["key"], len(s["steps"])) for s in short] == [("loss", 20), ("acc", 20), ("loss", 3), ("acc", 0)]
    assert short[2]["values"] == [1.0, "NaN", "Infinity"]


def test_bad_input_gets_4xx_with_a_message(page: httpx.Client, db: tuple[Path, dict[str, str]]) -> None:
    cases = [
        ("/api/runs", {"filter": "lr <"}, 400, "ends too early"),
        ("/api/runs", {"filter": "nosuch > 1"}, 400, "no param, metric or tag is named 'nosuch'"),
        ("/api/runs", {"filter": "lr < 1 lr"}, 400, "join conditions"),
        ("/api/runs", {"filter": "metric:loss:median < 1"}, 400, ":last, :min or :max"),
        ("/api/runs", {"filter": "name"}, 400, "compare it"),
        ("/api/runs", {"filter": "lr < $"}, 400, "cannot read"),
        ("/api/runs", {"sort": "lr desc"}, 400, "sort takes one field"),
        ("/api/runs", {"order": "up"}, 422, "order"),
        ("/api/runs", {"limit": "0"}, 422, "limit"),
        ("/api/runs", {"limit": "many"}, 422, "limit"),
        ("/api/runs", {"offset": "-1"}, 422, "offset"),
        ("/api/series", {"runs": db[1]["long"]}, 422, "keys"),
        ("/api/series", {"runs": "nothing", "keys": "loss"}, 404, "no run 'nothing'"),
        ("/api/series", {"runs": db[1]["long"], "keys": "loss", "max_points": "3"}, 422, "max_points"),
        ("/api/series", {"runs": ",".join(["x"] * 101), "keys": "loss"}, 400, "at most 100"),
        ("/api/updates", {"since": "-5"}, 422, "since"),
        ("/api/updates", {}, 422, "since"),
    ]
    for path, params, status, text in cases:
        response = page.get(path, params=params)
        assert response.status_code == status, (path, params, response.text)
        assert text in response.text, (path, params, response.text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.sampled_from(list("lr<>=!~()'\" :.-0123456789eandortgmicsx_")), max_size=40))
def test_any_filter_is_answered_without_a_server_error(page: httpx.Client, text: str) -> None:
    for param in ("filter", "sort"):
        response = page.get("/api/runs", params={param: text})
        assert response.status_code in (200, 400), (param, text, response.text)


def test_updates_since_a_cursor(db: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    tracker = wt.Tracker(path)
    run = tracker.start_run("live")
    other = tracker.start_run("other")
    run.log({"loss": 1.0})
    with RunsPageServer(path, port=0) as server, httpx.Client(base_url=server.url) as client:
        first = client.get("/api/series", params={"runs": run.id, "keys": "loss"}).json()
        cursor = first["cursor"]
        nothing = client.get("/api/updates", params={"since": cursor, "runs": run.id}).json()
        assert nothing["points"] == [] and nothing["cursor"] == cursor and nothing["runs"][0]["status"] == "running"
        run.log({"loss": 0.5, "acc": 0.1})
        other.log({"loss": 9.0})
        run.log({"loss": float("nan")})
        body = client.get("/api/updates", params={"since": cursor, "runs": run.id}).json()
        by_key = {p["key"]: p for p in body["points"]}
        assert by_key["loss"]["steps"] == [1, 2] and by_key["loss"]["values"] == [0.5, "NaN"]
        assert by_key["acc"]["values"] == [0.1] and all(p["run"] == run.id for p in body["points"])
        only_loss = client.get("/api/updates", params={"since": cursor, "runs": run.id, "keys": "loss"}).json()
        assert [p["key"] for p in only_loss["points"]] == ["loss"]
        page1 = client.get("/api/updates", params={"since": cursor, "runs": run.id, "limit": 1}).json()
        assert page1["truncated"] and len(page1["points"]) == 1
        page2 = client.get("/api/updates", params={"since": page1["cursor"], "runs": run.id, "limit": 10}).json()
        assert not page2["truncated"] and sum(len(p["steps"]) for p in page2["points"]) == 2
        run.finish()
        done = client.get("/api/updates", params={"since": body["cursor"], "runs": run.id}).json()
        assert done["runs"][0]["status"] == "finished" and done["points"] == [] and done["running"] == 1
    other.finish()
    tracker.close()


def test_token(db: tuple[Path, dict[str, str]]) -> None:
    with RunsPageServer(db[0], port=0, token="s3cret") as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/").status_code == 200  # the page itself holds no data
        refused = client.get("/api/runs")
        assert refused.status_code == 401 and "bearer token" in refused.json()["error"]
        assert client.get("/api/keys", headers={"authorization": "Bearer wrong"}).status_code == 401
        ok = client.get("/api/runs", headers={"authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["total"] == 15
    with pytest.raises(ConfigError, match="token"):
        RunsPageServer(db[0], port=0, token="")


def test_read_only_never_blocks_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    tracker = wt.Tracker(path)
    run = tracker.start_run("busy")
    run.log({"loss": 1.0})
    with RunsPageServer(path, port=0) as server, httpx.Client(base_url=server.url) as client:
        # a writer holding the write lock does not stop the page from reading...
        writer = sqlite3.connect(path, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE runs SET name = 'renamed' WHERE id = ?", (run.id,))
        assert client.get("/api/runs").json()["runs"][0]["name"] == "busy"  # the last committed state
        writer.execute("COMMIT")
        writer.close()
        # ...and readers in the middle of reading do not stop the writer
        done = threading.Event()

        def write() -> None:
            for step in range(1, 200):
                run.log({"loss": 1.0 / step})
            done.set()

        thread = threading.Thread(target=write)
        thread.start()
        while not done.is_set():
            assert client.get("/api/series", params={"runs": run.id, "keys": "loss"}).status_code == 200
        thread.join()
        assert client.get("/api/runs").json()["runs"][0]["metrics"]["loss"]["count"] == 200
        with pytest.raises(sqlite3.OperationalError, match=r"readonly|read-only"):
            server.store._db().execute("INSERT INTO runs (id, name, status, created) VALUES ('x', 'x', 'x', 0)")
    run.finish()
    tracker.close()


def test_old_database_is_upgraded_once_then_read(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript("""
            CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL, created REAL NOT NULL,
                ended REAL, params TEXT NOT NULL DEFAULT '{}', tags TEXT NOT NULL DEFAULT '{}');
            CREATE TABLE metrics (run_id TEXT NOT NULL, key TEXT NOT NULL, step INTEGER NOT NULL,
                value REAL NOT NULL, time REAL NOT NULL);
            CREATE TABLE artifacts (run_id TEXT NOT NULL, name TEXT NOT NULL, path TEXT NOT NULL, time REAL NOT NULL);
            INSERT INTO runs VALUES ('r1', 'old', 'finished', 1.0, 2.0, '{"lr": 0.1}', '{}');
            INSERT INTO metrics VALUES ('r1', 'loss', 0, 0.5, 1.5);
        """)
        conn.commit()
    with RunsPageServer(path, port=0) as server, httpx.Client(base_url=server.url) as client:
        (run,) = client.get("/api/runs").json()["runs"]
        assert run["metrics"]["loss"]["last"] == 0.5
    with pytest.raises(ConfigError, match="no tracker database"):
        RunsPageServer(tmp_path / "absent.db", port=0)


def test_filter_compiles_to_bound_sql() -> None:
    keys = Keys(params=frozenset({"lr", "x"}), metrics=frozenset({"loss", "x"}), tags=frozenset({"team"}))
    compiled = compile_filter("lr < 0.01 and tag:baseline", keys)
    assert compiled is not None and "0.01" not in compiled.sql and 0.01 in compiled.args
    evil = compile_filter("name = \"x'; DROP TABLE runs; --\"", keys)
    assert evil is not None and "DROP" not in evil.sql
    assert compile_filter("   ", keys) is None
    with pytest.raises(FilterError, match="both a param and a metric"):
        compile_filter("x > 1", keys)
    assert compile_filter("param:x > 1 and metric:x:max < 2 and team = a", keys) is not None


def test_downsampling_reads_blocks_and_keeps_every_extreme(tmp_path: Path) -> None:
    tracker = wt.Tracker(tmp_path / "w.db")
    run = tracker.start_run("r")
    rng = np.random.default_rng(1)
    values = rng.normal(size=20_000)
    from weft.train._tracker_schema import write_points

    tracker._write(lambda db: write_points(db, run.id, [("x", s, float(v), float(s)) for s, v in enumerate(values)]))
    conn = sqlite3.connect(tmp_path / "w.db")
    for max_points in (100, 1500, 5000):
        s = read_series(conn, run.id, "x", max_points=max_points)
        assert s.downsampled and len(s.steps) <= max_points and s.points == 20_000
        assert s.values.max() == values.max() and s.values.min() == values.min()
        assert np.array_equal(s.values, values[s.steps])  # every point drawn is a real point
        assert np.array_equal(s.times, s.steps.astype(float))
    whole = read_series(conn, run.id, "x", max_points=20_000)
    assert not whole.downsampled and np.array_equal(whole.values, values)
    assert read_series(conn, run.id, "nope").points == 0
    conn.close()
    run.finish()
    tracker.close()
