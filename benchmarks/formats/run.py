"""Formats benchmark: Parquet and WebDataset read through weft against their peers.

Parquet rows/s: weft's batch mode against a raw ``pyarrow.dataset`` scan (the limit,
with and without the NumPy conversion weft's batches include), Ray Data
(``read_parquet().iter_batches``) and Hugging Face ``datasets`` (streaming); weft's row
mode against the row iterators of Ray Data and ``datasets``. WebDataset samples/s:
weft against the ``webdataset`` package, SPDL's tar iterator and a plain stdlib
``tarfile`` loop. Every contender runs in a fresh process (``child.py``), contenders
interleaved, ``--repeats`` times; the table gives the median, worst and best.

    python benchmarks/formats/run.py                  # the full run (a few minutes)
    python benchmarks/formats/run.py --quick          # 2 repeats, fewer rows in row mode
    python benchmarks/formats/run.py --setup-only     # data and peer environments only

Run it alone (``flock /work/.locks/test.lock ...`` on a shared machine): every
contender uses every core. Peers (Ray Data, datasets, webdataset, SPDL) live in their
own venvs under ``benchmarks/.envs`` (``envs.py``). Writes
``benchmarks/results/formats.json``, ``formats.png`` and ``formats.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus  # noqa: E402
import envs  # noqa: E402

REPO = HERE.parents[1]
RESULTS = REPO / "benchmarks" / "results"
CHILD = HERE / "child.py"
VENVS = {"gil": REPO / ".venv", "ft": REPO / ".venv-ft"}
LABELS = {"gil": "3.11", "ft": "3.13t"}


@dataclass(kw_only=True)
class Contender:
    format: str  # "parquet" or "webdataset"
    name: str  # a function of child.py
    label: str
    interp: str  # "gil" or "ft"
    python: Path | None
    why_not: str = ""
    limit: int = 0  # rows read in row mode (0: everything)
    runs: list[dict[str, Any]] = field(default_factory=list)


def _weft_python(tag: str) -> Path | None:
    python = VENVS[tag] / "bin" / "python"
    return python if python.exists() else None


def contenders(args: argparse.Namespace) -> list[Contender]:
    out: list[Contender] = []
    base = sys._base_executable  # type: ignore[attr-defined]
    peers = {peer: envs.ensure(peer, base) for peer in envs.PEERS}
    row_limit = 131_072 if args.quick else 524_288
    for tag in args.python:
        weft = _weft_python(tag)
        if weft is None:
            continue
        suffix = "" if tag == "gil" else f" ({LABELS[tag]})"
        if "parquet" in args.formats:
            out += [Contender(format="parquet", name="pyarrow_scan", label=f"pyarrow scan (limit){suffix}",
                              interp=tag, python=weft),
                    Contender(format="parquet", name="pyarrow_scan_numpy", label=f"pyarrow scan + to_numpy{suffix}",
                              interp=tag, python=weft),
                    Contender(format="parquet", name="weft_batches", label=f"weft batches{suffix}",
                              interp=tag, python=weft),
                    Contender(format="parquet", name="weft_rows", label=f"weft rows{suffix}", interp=tag,
                              python=weft, limit=row_limit)]
            if tag == "gil":
                python, why = peers["ray"]
                for name, label, limit in [("ray_batches", "Ray Data iter_batches", 0),
                                           ("ray_rows", "Ray Data iter_rows", row_limit)]:
                    out.append(Contender(format="parquet", name=name, label=label, interp=tag, python=python,
                                         why_not=why, limit=limit))
                python, why = peers["datasets"]
                out += [Contender(format="parquet", name="datasets_batches", label="datasets streaming batches",
                                  interp=tag, python=python, why_not=why),
                        Contender(format="parquet", name="datasets_rows", label="datasets streaming rows",
                                  interp=tag, python=python, why_not=why, limit=row_limit)]
        if "webdataset" in args.formats:
            out += [Contender(format="webdataset", name="tarfile_loop", label=f"stdlib tarfile loop{suffix}",
                              interp=tag, python=weft),
                    Contender(format="webdataset", name="weft_webdataset", label=f"weft{suffix}", interp=tag,
                              python=weft)]
            if tag == "gil":
                for peer, name, label in [("webdataset", "webdataset_package", "webdataset package"),
                                          ("spdl", "spdl_tar", "SPDL iter_tarfile")]:
                    python, why = peers[peer]
                    out.append(Contender(format="webdataset", name=name, label=label, interp=tag,
                                         python=python, why_not=why))
    return out


def run_once(c: Contender, root: Path) -> dict[str, Any]:
    assert c.python is not None
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1",
               RAY_DEDUP_LOGS="0", PYTHONWARNINGS="ignore")
    cmd = [str(c.python), str(CHILD), c.name, str(root)] + ([str(c.limit)] if c.limit else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"ok": False, "error": tail[:300]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["ok"] = True
    result["rows_per_s"] = result["rows"] / result["seconds"]
    return result


def summarize(c: Contender) -> dict[str, Any]:
    rates = [r["rows_per_s"] for r in c.runs if r.get("ok")]
    out: dict[str, Any] = {"format": c.format, "contender": c.name, "label": c.label, "interpreter": LABELS[c.interp],
                           "runs": c.runs, "why_not": c.why_not or None}
    if rates:
        out.update(median=statistics.median(rates), worst=min(rates), best=max(rates),
                   rows=c.runs[-1].get("rows"))
    else:
        errors = [r.get("error") for r in c.runs if not r.get("ok")]
        out["why_not"] = c.why_not or (errors[0] if errors else "not run")
    return out


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {(r["contender"], r["interpreter"]): r for r in rows if "median" in r}

    def ratio(a: str, b: str) -> dict[str, float] | None:
        x, y = by.get((a, "3.11")), by.get((b, "3.11"))
        if not x or not y:
            return None
        return {"median": x["median"] / y["median"], "worst": x["worst"] / y["worst"], "best": x["best"] / y["best"]}

    out = []
    for name, a, b, goal in [
        ("Parquet batches >= 0.9x the raw pyarrow scan", "weft_batches", "pyarrow_scan", 0.9),
        ("Parquet batches >= 2x Ray Data iter_batches", "weft_batches", "ray_batches", 2.0),
        ("Parquet batches >= 2x datasets streaming", "weft_batches", "datasets_batches", 2.0),
        ("Parquet rows >= 2x Ray Data iter_rows", "weft_rows", "ray_rows", 2.0),
        ("Parquet rows >= 2x datasets streaming rows", "weft_rows", "datasets_rows", 2.0),
        ("WebDataset >= 1.2x the webdataset package", "weft_webdataset", "webdataset_package", 1.2),
    ]:
        r = ratio(a, b)
        out.append({"target": name, "goal": goal, "ratio": r, "met": None if r is None else r["median"] >= goal})
    return out


def table(rows: list[dict[str, Any]], goals: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [f"Formats benchmark, {meta['date']}, {meta['cores']} cores, {meta['repeats']} interleaved repeats "
             f"(rows/s: median, worst, best).", ""]
    for fmt, unit in [("parquet", "rows/s"), ("webdataset", "samples/s")]:
        chosen = [r for r in rows if r["format"] == fmt]
        if not chosen:
            continue
        lines += [f"| {fmt} | {unit} median | worst | best | items |", "|---|---:|---:|---:|---:|"]
        for r in chosen:
            if "median" in r:
                lines.append(f"| {r['label']} | {r['median']:,.0f} | {r['worst']:,.0f} | {r['best']:,.0f} | "
                             f"{r['rows']:,} |")
            else:
                lines.append(f"| {r['label']} | not run: {r['why_not']} | | | |")
        lines.append("")
    lines += ["| target | median ratio (worst/worst, best/best) | met |", "|---|---:|---|"]
    for g in goals:
        r = g["ratio"]
        text = "no data" if r is None else f"{r['median']:.2f}x ({r['worst']:.2f}x, {r['best']:.2f}x)"
        lines.append(f"| {g['target']} | {text} | {'-' if g['met'] is None else 'yes' if g['met'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def chart(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    formats = [f for f in ("parquet", "webdataset") if any(r["format"] == f and "median" in r for r in rows)]
    if not formats:
        return
    fig, axes = plt.subplots(len(formats), 1, figsize=(9, 1.2 + 0.45 * len(rows)), squeeze=False)
    for ax, fmt in zip(axes[:, 0], formats, strict=True):
        chosen = [r for r in rows if r["format"] == fmt and "median" in r][::-1]
        medians = [r["median"] for r in chosen]
        lows = [r["median"] - r["worst"] for r in chosen]
        highs = [r["best"] - r["median"] for r in chosen]
        colors = ["tab:orange" if r["contender"].startswith("weft") else "tab:gray" for r in chosen]
        ax.barh([r["label"] for r in chosen], medians, xerr=[lows, highs], color=colors, capsize=3)
        ax.set_xscale("log")
        ax.set_xlabel("rows/s (log scale; median, whiskers worst..best)" if fmt == "parquet"
                      else "samples/s (log scale; median, whiskers worst..best)")
        ax.set_title(fmt)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 repeats, fewer rows in row mode")
    parser.add_argument("--formats", nargs="+", default=["parquet", "webdataset"], choices=["parquet", "webdataset"])
    parser.add_argument("--python", nargs="+", default=["gil", "ft"], choices=["gil", "ft"])
    parser.add_argument("--setup-only", action="store_true")
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    roots = {"parquet": corpus.parquet_dir(), "webdataset": corpus.shard_dir()}
    chosen = contenders(args)
    if args.setup_only:
        for c in chosen:
            print(f"{c.label:<36} {c.python or 'not installed: ' + c.why_not}")
        return
    for repeat in range(repeats):
        for c in chosen:
            if c.python is None:
                continue
            result = run_once(c, roots[c.format])
            c.runs.append(result)
            shown = f"{result['rows_per_s']:>14,.0f}/s" if result["ok"] else f"failed: {result['error']}"
            print(f"[{repeat + 1}/{repeats}] {c.label:<36} {shown}", flush=True)
    rows = [summarize(c) for c in chosen]
    goals = targets(rows)
    meta = {"date": dt.date.today().isoformat(), "cores": len(os.sched_getaffinity(0)), "repeats": repeats,
            "machine": platform.platform(), "parquet": corpus.PARQUET, "shards": corpus.SHARDS,
            "parquet_rows": corpus.parquet_rows(), "samples": corpus.samples()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "formats.json").write_text(json.dumps({"meta": meta, "rows": rows, "targets": goals}, indent=1))
    text = table(rows, goals, meta)
    (RESULTS / "formats.md").write_text(text)
    chart(rows, RESULTS / "formats.png")
    print()
    print(text)


if __name__ == "__main__":
    main()
