"""weft on a cluster engine against Ray Data, against weft's local process backend, and
weft on Dask, on the Load benchmark's workloads and the same cores.

    python benchmarks/cluster/run.py [--quick] [--workloads images text io] [--rounds 1]

Every measurement runs in a fresh process (``child.py``) that starts its own engine on
this machine's usable cores (Ray: ``ray.init(num_cpus=N)``; Dask: a ``LocalCluster`` of N
single-threaded worker processes). Contenders are interleaved: round after round, each
workload runs every contender once before the next round. Measured per run: items/s
over the second of two epochs, time to first batch (from the pipeline's construction,
the engine already up; the engine's own start-up is reported apart), and the peak
summed RSS of the whole process tree (the engine's daemons and workers included),
sampled every 50 ms. Writes ``benchmarks/results/cluster.{json,md,png}``.

Contenders: ``weft-ray`` (``.map(fn, backend="ray")``), ``raydata-tasks``
(``map_batches`` with a function, then ``iter_batches``), ``raydata-actors``
(``map_batches`` with a callable class on an actor pool of N), ``weft-process`` (the
local process backend) and ``weft-dask`` (``.map(fn, backend="dask")``).

Ray Data needs pandas (``pip install 'ray[data]'``); without it its contenders report the
ImportError and the others still run. ``--quick`` (256 images, 2000 documents, 512 io
items per epoch) makes Ray Data's fixed cost per epoch (it plans and starts a new
streaming execution for each ``iter_batches``) weigh more than the full sizes do.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE.parent / "load"))

import workloads  # noqa: E402

CONTENDERS = ("weft-ray", "raydata-tasks", "raydata-actors", "weft-process", "weft-dask")
#: Items per workload: full, quick. Fewer than the Load benchmark's: each run starts an engine.
ITEMS = {"images": (1000, 256), "text": (8000, 2000), "io": (2000, 512)}
#: Generated once under benchmarks/.data/cluster (seeded, like the Load benchmark's data).
DATA = ROOT / "benchmarks" / ".data" / "cluster"
RESULTS = ROOT / "benchmarks" / "results"
SAMPLE_SECONDS = 0.05


def ensure_data(name: str, count: int) -> None:
    if name == "io":
        return
    directory = DATA / name
    stamp = directory / ".complete"
    if stamp.exists() and int(stamp.read_text()) >= count:
        return
    generate = workloads._generate_images if name == "images" else workloads._generate_text
    generate(directory, count, 0)
    stamp.write_text(str(count))


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_one(contender: str, workload: str, items: int, workers: int) -> dict[str, Any]:
    spec = {"contender": contender, "workload": workload, "items": items, "workers": workers, "data": str(DATA)}
    with tempfile.TemporaryDirectory(prefix="wc-", dir="/tmp") as tmp:
        env = {**os.environ, "RAY_TMPDIR": tmp, "PYTHONPATH": os.pathsep.join(
            [str(HERE), str(HERE.parent / "load"), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
        env.pop("RAY_ADDRESS", None)  # each run starts its own engine on this machine
        proc = subprocess.Popen([sys.executable, str(HERE / "child.py"), json.dumps(spec)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
        peak = 0
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.wait(SAMPLE_SECONDS):
                peak = max(peak, _tree_rss(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            out, err = proc.communicate(timeout=900)
        finally:
            stop.set()
            sampler.join()
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
        _reap_group(proc.pid)
    if proc.returncode != 0:
        return {"contender": contender, "workload": workload, "error": err.strip().splitlines()[-5:]}
    result = json.loads(out.strip().splitlines()[-1])
    result.update(contender=contender, workload=workload, items=items, peak_rss_bytes=peak)
    return result


def _reap_group(pgid: int) -> None:
    """Ray leaves daemons behind when its driver exits abruptly: stop the run's process group."""
    try:
        os.killpg(pgid, 15)
    except ProcessLookupError:
        return
    time.sleep(1.0)
    try:
        os.killpg(pgid, 9)
    except ProcessLookupError:
        pass


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in runs:
        if "error" in r:
            continue
        cell = out.setdefault(r["workload"], {}).setdefault(r["contender"], {})
        for key in ("items_per_second", "first_batch_seconds", "engine_start_seconds", "peak_rss_bytes"):
            cell.setdefault(key + "_all", []).append(r[key])  # type: ignore[arg-type]
    for per_workload in out.values():
        for cell in per_workload.values():
            for key in list(cell):
                if key.endswith("_all"):
                    cell[key[:-4]] = statistics.median(cell[key])  # type: ignore[arg-type]
    return out


def targets(summary: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    lines = []
    for workload, cells in summary.items():
        ray_ = cells.get("weft-ray")
        if ray_ is None:
            continue
        best_data = [cells[c] for c in ("raydata-tasks", "raydata-actors") if c in cells]
        if best_data:
            fastest = max(best_data, key=lambda c: c["items_per_second"])
            quickest = min(best_data, key=lambda c: c["first_batch_seconds"])
            speed = ray_["items_per_second"] / fastest["items_per_second"]
            ttfb = ray_["first_batch_seconds"] / quickest["first_batch_seconds"]
            lines.append(f"{workload}: weft on Ray {speed:.2f}x Ray Data's best items/s (target >= 1.5: "
                         f"{'holds' if speed >= 1.5 else 'does not hold'}); time to first batch {ttfb:.2f}x "
                         f"its best (target <= 0.5: {'holds' if ttfb <= 0.5 else 'does not hold'})")
        if "weft-process" in cells:
            local = ray_["items_per_second"] / cells["weft-process"]["items_per_second"]
            lines.append(f"{workload}: weft on Ray {local:.2f}x weft's local process backend (target >= 0.8: "
                         f"{'holds' if local >= 0.8 else 'does not hold'})")
    return lines


def table(summary: dict[str, dict[str, dict[str, float]]]) -> str:
    rows = ["| workload | contender | items/s | first batch (s) | engine start (s) | peak RSS (MB) |",
            "|---|---|---:|---:|---:|---:|"]
    for workload, cells in summary.items():
        for contender in CONTENDERS:
            c = cells.get(contender)
            if c is None:
                continue
            rows.append(f"| {workload} | {contender} | {c['items_per_second']:.0f} | {c['first_batch_seconds']:.2f} | "
                        f"{c['engine_start_seconds']:.1f} | {c['peak_rss_bytes'] / 1e6:.0f} |")
    return "\n".join(rows)


def chart(summary: dict[str, dict[str, dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    metrics = [("items_per_second", "items/s (higher is better)", 1.0),
               ("first_batch_seconds", "time to first batch, s (lower is better)", 1.0),
               ("peak_rss_bytes", "peak RSS of the process tree, MB (lower is better)", 1e-6)]
    width = 0.8 / len(CONTENDERS)
    for ax, (key, title, scale) in zip(axes, metrics, strict=True):
        for i, contender in enumerate(CONTENDERS):
            values = [summary[n].get(contender, {}).get(key, 0.0) * scale for n in names]
            ax.bar([j + i * width for j in range(len(names))], values, width, label=contender)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], names)
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer items per workload")
    parser.add_argument("--workloads", nargs="+", default=list(ITEMS), choices=list(ITEMS))
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=list(CONTENDERS))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    for workload in args.workloads:
        ensure_data(workload, ITEMS[workload][args.quick])
    for rnd in range(args.rounds):
        for workload in args.workloads:
            for contender in args.contenders:
                result = run_one(contender, workload, ITEMS[workload][args.quick], args.workers)
                runs.append(result)
                shown = result.get("error") or (f"{result['items_per_second']:.0f} items/s, first batch "
                                                 f"{result['first_batch_seconds']:.2f} s, peak RSS "
                                                 f"{result['peak_rss_bytes'] / 1e6:.0f} MB")
                print(f"round {rnd + 1} {workload:<6} {contender:<15} {shown}", flush=True)
    summary = summarise(runs)
    lines = targets(summary)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cluster.json").write_text(json.dumps({"mode": "quick" if args.quick else "full", "workers":
                                                       args.workers, "runs": runs, "summary": summary,
                                                       "targets": lines}, indent=1))
    text = table(summary) + "\n\n" + "\n".join(f"- {line}" for line in lines) + "\n"
    (args.out / "cluster.md").write_text(text)
    chart(summary, args.out / "cluster.png")
    print(text)


if __name__ == "__main__":
    main()
