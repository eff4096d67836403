"""The runs page against MLflow's tracking server at 10,000 runs and ~2,000,000 metric points.

Both get the same runs (``data.py``): weft's tracker database and an MLflow tracking
server on SQLite (its own virtual environment under benchmarks/.envs/mlflow), both on
127.0.0.1. Timed, p50 and p95 of each call the pages make:

- list runs sorted and filtered (a metric filter and a tag, sorted by a metric, 100 rows);
- one metric history of 1,000,000 points (weft: downsampled on the server; MLflow:
  ``metrics/get-history``, which its UI calls, and ``get-history-bulk-interval``, its sampled one);
  MLflow's full 1M-point history takes minutes, so it is timed once;
- compare 10 runs (one metric of ten runs, one of them the long run: weft one call; MLflow ten
  get-history calls, timed once);

and the time from navigation to the first drawn chart in headless Chromium (weft).
Writes benchmarks/results/runs_ui.{json,png} and prints a table. The generated data
is kept under benchmarks/.data/ and reused.

    python benchmarks/runs_ui/run.py [--repeat 30] [--skip-mlflow]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

import data  # noqa: E402

DATA = ROOT / "benchmarks" / ".data" / "runs_ui"
RESULTS = ROOT / "benchmarks" / "results"
ENV = ROOT / "benchmarks" / ".envs" / "mlflow"
MLFLOW_REQUIREMENT = "mlflow==3.17.2"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VERSION = "1"  # bump when data.py changes: the cached databases are rebuilt


def build_weft(path: Path) -> dict[str, str]:
    """The weft database (cached); returns {name: run id}."""
    import weft.train as wt
    from weft.train._tracker_schema import write_points

    ids_file = path.with_suffix(".ids.json")
    if path.exists() and ids_file.exists() and json.loads(ids_file.read_text()).get("version") == VERSION:
        return dict(json.loads(ids_file.read_text())["ids"])
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"  generating {path} ...", flush=True)
    started = time.perf_counter()
    tracker = wt.Tracker(path)
    ids: dict[str, str] = {}
    long_run = tracker.start_run("long", params={"lr": 0.001, "batch": 64, "depth": 8, "opt": "adam"},
                                 tags={"long": "true"})
    ids["long"] = long_run.id
    points = data.long_points()
    for start in range(0, len(points), 50_000):
        chunk = points[start:start + 50_000]
        tracker._write(lambda db, chunk=chunk: write_points(db, long_run.id, chunk))
    long_run.finish()
    for i in range(1, data.N_RUNS):
        spec = data.run_spec(i)
        run = tracker.start_run(str(spec["name"]), params=spec["params"], tags=spec["tags"])  # type: ignore[arg-type]
        ids[run.name] = run.id
        tracker._write(lambda db, run=run, i=i: write_points(db, run.id, data.run_points(i)))
        run.finish()
    tracker.close()
    ids_file.write_text(json.dumps({"version": VERSION, "ids": ids}))
    print(f"  weft database built in {time.perf_counter() - started:.0f} s", flush=True)
    return ids


def ensure_mlflow() -> Path | None:
    python = ENV / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", "import mlflow"], capture_output=True).returncode == 0:
        return python
    print(f"  setting up {ENV.relative_to(ROOT)} ({MLFLOW_REQUIREMENT})", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(ENV)], check=True)
    proc = subprocess.run([str(python), "-m", "pip", "install", "--quiet", MLFLOW_REQUIREMENT], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        print(f"  could not install MLflow: {proc.stderr[-2000:]}", flush=True)
        return None
    return python


MLFLOW_LOADER = r"""
import json, sys
sys.path.insert(0, sys.argv[2])
import data
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
client = MlflowClient(tracking_uri="sqlite:///" + sys.argv[1])
experiment = client.create_experiment("bench")
ids = {}
run = client.create_run(experiment, start_time=int(data.START * 1000), tags={"long": "true", "mlflow.runName": "long"})
ids["long"] = run.info.run_id
client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in
                 {"lr": 0.001, "batch": 64, "depth": 8, "opt": "adam"}.items()])
points = data.long_points()
for start in range(0, len(points), 1000):
    client.log_batch(run.info.run_id, metrics=[Metric(k, v, int(t * 1000), s) for k, s, v, t in points[start:start + 1000]])
client.set_terminated(run.info.run_id)
for i in range(1, data.N_RUNS):
    spec = data.run_spec(i)
    run = client.create_run(experiment, start_time=int(spec["created"] * 1000),
                            tags={**spec["tags"], "mlflow.runName": spec["name"]})
    ids[spec["name"]] = run.info.run_id
    client.log_batch(run.info.run_id, metrics=[Metric(k, v, int(t * 1000), s) for k, s, v, t in data.run_points(i)],
                     params=[Param(k, str(v)) for k, v in spec["params"].items()])
    client.set_terminated(run.info.run_id)
    if i % 1000 == 0:
        print(f"  mlflow: {i} runs", flush=True)
print(json.dumps({"experiment": experiment, "ids": ids}))
"""


def build_mlflow(python: Path, path: Path) -> dict[str, Any]:
    meta = path.with_suffix(".ids.json")
    if path.exists() and meta.exists() and json.loads(meta.read_text()).get("version") == VERSION:
        return dict(json.loads(meta.read_text()))
    path.unlink(missing_ok=True)
    print(f"  logging the same runs into MLflow ({path}); this takes a while ...", flush=True)
    started = time.perf_counter()
    proc = subprocess.run([str(python), "-c", MLFLOW_LOADER, str(path), str(HERE)], capture_output=True, text=True,
                          env={**os.environ, "MLFLOW_ENABLE_ASYNC_LOGGING": "false"})
    if proc.returncode != 0:
        raise RuntimeError(f"logging into MLflow failed: {proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["version"] = VERSION
    meta.write_text(json.dumps(result))
    print(f"  MLflow database built in {time.perf_counter() - started:.0f} s", flush=True)
    return dict(result)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(call: Callable[[], httpx.Response], repeat: int, *, warm_up: bool = True) -> dict[str, float]:
    """p50 and p95 of ``repeat`` calls (one untimed call first unless ``warm_up`` is false)."""
    if warm_up:
        call()
    samples = []
    size = 0
    for _ in range(repeat):
        started = time.perf_counter()
        response = call()
        samples.append(time.perf_counter() - started)
        response.raise_for_status()
        size = len(response.content)
    samples.sort()
    return {"p50_ms": statistics.median(samples) * 1000,
            "p95_ms": samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))] * 1000,
            "n": len(samples), "bytes": size}


def bench_weft(db: Path, ids: dict[str, str], repeat: int) -> dict[str, Any]:
    from weft.train._runs_ui._server import RunsPageServer

    ten = [ids["long"]] + [ids[f"run-{i:05d}"] for i in range(1, 10)]
    out: dict[str, Any] = {}
    with RunsPageServer(db, port=0) as server, httpx.Client(base_url=server.url, timeout=120) as client:
        out["list runs (first page)"] = timed(lambda: client.get("/api/runs", params={"limit": 100}), repeat)
        out["list runs sorted + filtered"] = timed(lambda: client.get("/api/runs", params={
            "filter": "metric:acc > 0.5 and tag:baseline", "sort": "metric:loss", "order": "asc", "limit": 100}),
            repeat)
        out["history 1M points"] = timed(lambda: client.get("/api/series", params={
            "runs": ids["long"], "keys": "loss"}), repeat)
        out["compare 10 runs"] = timed(lambda: client.get("/api/series", params={
            "runs": ",".join(ten), "keys": "loss"}), repeat)
        out["first chart (browser)"] = first_chart(server.url, ten, repeat=max(3, repeat // 6))
    return out


def first_chart(url: str, ten: list[str], repeat: int) -> dict[str, Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"skipped": "playwright is not installed"}
    if not os.access(CHROMIUM, os.X_OK):
        return {"skipped": f"no Chromium at {CHROMIUM}"}
    samples = []
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                       viewport={"width": 1280, "height": 900})
        try:
            for attempt in range(repeat + 1):
                page = context.new_page()
                page.goto(f"{url}/?select={','.join(ten)}&metric=loss")
                page.wait_for_function("window.weftUI && weftUI.state.firstChartMs !== undefined", timeout=60_000)
                if attempt:  # the first load warms the server's caches and the browser's
                    samples.append(float(page.evaluate("weftUI.state.firstChartMs")))
                if attempt == repeat:
                    RESULTS.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(RESULTS / "runs_ui_page.png"), full_page=False)
                page.close()
        finally:
            context.close()
    samples.sort()
    return {"p50_ms": statistics.median(samples), "p95_ms": samples[-1] if len(samples) < 20 else
            samples[round(0.95 * (len(samples) - 1))], "n": len(samples)}


def bench_mlflow(python: Path, db: Path, meta: dict[str, Any], repeat: int) -> dict[str, Any]:
    port = free_port()
    artifacts = tempfile.mkdtemp(prefix="mlflow-artifacts-")
    server = subprocess.Popen([str(python), "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{db}",
                               "--default-artifact-root", artifacts, "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    ids, experiment = meta["ids"], str(meta["experiment"])
    ten = [ids["long"]] + [ids[f"run-{i:05d}"] for i in range(1, 10)]
    out: dict[str, Any] = {}
    try:
        with httpx.Client(base_url=base, timeout=600) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the MLflow server did not start within 120 s")
                time.sleep(0.2)
            search = "/api/2.0/mlflow/runs/search"
            out["list runs (first page)"] = timed(lambda: client.post(search, json={
                "experiment_ids": [experiment], "max_results": 100, "order_by": ["attributes.start_time DESC"]}),
                repeat)
            out["list runs sorted + filtered"] = timed(lambda: client.post(search, json={
                "experiment_ids": [experiment], "filter": "metrics.acc > 0.5 and tags.baseline = 'true'",
                "order_by": ["metrics.loss ASC"], "max_results": 100}), repeat)
            history = "/api/2.0/mlflow/metrics/get-history"
            # a 1,000,000-point get-history takes minutes here: timed once, without a warm-up
            out["history 1M points"] = timed(lambda: client.get(history, params={
                "run_id": ids["long"], "metric_key": "loss", "max_results": 1_000_000}), 1, warm_up=False)
            bulk = "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval"
            out["history 1M points (bulk-interval, sampled)"] = timed(lambda: client.get(bulk, params={
                "run_ids": ids["long"], "metric_key": "loss", "max_results": 1500}), 3, warm_up=False)

            class _All:
                """Ten get-history calls, one per run, as one timed step."""

                def __call__(self) -> httpx.Response:
                    last = None
                    for run_id in ten:
                        last = client.get(history, params={"run_id": run_id, "metric_key": "loss",
                                                            "max_results": 1_000_000})
                        last.raise_for_status()
                    assert last is not None
                    return last

            out["compare 10 runs"] = timed(_All(), 1, warm_up=False)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:  # its job runners linger: stop the whole group
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=20)
    return out


def report(results: dict[str, Any]) -> None:
    weft, mlflow = results["weft"], results.get("mlflow") or {}
    rows = []
    print(f"\n{'call':45} {'weft p50':>10} {'weft p95':>10} {'MLflow p50':>11} {'MLflow p95':>11} {'speed-up p50':>13}")
    for call in [*weft, *[c for c in mlflow if c not in weft]]:
        w, m = weft.get(call, {}), mlflow.get(call, {})
        ratio = (m["p50_ms"] / w["p50_ms"]) if "p50_ms" in w and "p50_ms" in m else None
        rows.append({"call": call, "weft": w, "mlflow": m, "speedup_p50": ratio})

        def ms(d: dict[str, Any], key: str) -> str:
            return f"{d[key]:.1f}" if key in d else "-"

        print(f"{call:45} {ms(w, 'p50_ms'):>10} {ms(w, 'p95_ms'):>10} {ms(m, 'p50_ms'):>11} {ms(m, 'p95_ms'):>11} "
              f"{(f'{ratio:.0f}x' if ratio else '-'):>13}")
    results["rows"] = rows
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "runs_ui.json").write_text(json.dumps(results, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    calls = [r["call"] for r in rows]
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    positions = range(len(calls))
    for offset, who, color in ((-0.2, "weft", "#2463eb"), (0.2, "mlflow", "#e4572e")):
        values = [r[who].get("p95_ms", 0) or 0 for r in rows]
        ax.barh([p + offset for p in positions], values, height=0.4, color=color, label=f"{who} p95")
    ax.axvline(100, color="#667085", linestyle="--", linewidth=1, label="100 ms target")
    ax.set_yticks(list(positions), calls)
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds (log scale)")
    ax.set_title(f"runs page at {data.N_RUNS:,} runs, {results['points']:,} points: weft vs MLflow")
    ax.legend(loc="lower right")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(RESULTS / "runs_ui.png")
    plt.close(fig)
    print(f"\nwrote {RESULTS / 'runs_ui.json'}, {RESULTS / 'runs_ui.png'}, {RESULTS / 'runs_ui_page.png'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=30, help="timed calls per API call (fewer for the slow ones)")
    ap.add_argument("--skip-mlflow", action="store_true")
    args = ap.parse_args(argv)
    ids = build_weft(DATA / "weft.db")
    results: dict[str, Any] = {"runs": data.N_RUNS, "points": data.LONG_POINTS + (data.N_RUNS - 1) * data.STEPS * 2,
                               "python": sys.version.split()[0], "repeat": args.repeat}
    results["weft"] = bench_weft(DATA / "weft.db", ids, args.repeat)
    if not args.skip_mlflow:
        python = ensure_mlflow()
        if python is not None:
            meta = build_mlflow(python, DATA / "mlflow.db")
            results["mlflow_version"] = subprocess.run([str(python), "-c", "import mlflow; print(mlflow.__version__)"],
                                                       capture_output=True, text=True).stdout.strip()
            results["mlflow"] = bench_mlflow(python, DATA / "mlflow.db", meta, args.repeat)
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
