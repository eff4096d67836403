"""Checkpoint save/restore speed: weft.train.Checkpoints vs torch.save/torch.load vs np.savez.

One run, one ~100 MB state of several float32/int64 arrays, every method on the same
disk, the median of several repetitions, ratios against torch.save/torch.load measured
in the same run. weft's default save is durable (fsync of the file and the directory)
and its restore checks a sha256; torch.save and np.savez do neither, so weft is also
measured with ``durable=False`` and ``verify=False`` for a like-for-like row. Reads
come from the page cache for every method (the file was just written).

    python benchmarks/train_checkpoint.py [--mb 100] [--repeat 5]

Writes benchmarks/results/train_checkpoint.json and .png and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import weft.train as wt

RESULTS = Path(__file__).resolve().parent / "results"


def make_state(total_mb: float) -> dict[str, np.ndarray]:
    """A model-like state: six weight matrices, an embedding, biases and counters."""
    rng = np.random.default_rng(0)
    per = int(total_mb * 1e6 * 0.8 / 6 / 4 / 2048)  # rows of 2048 float32 per weight matrix
    state: dict[str, np.ndarray] = {}
    for i in range(6):
        state[f"layers.{i}.weight"] = rng.standard_normal((per, 2048), dtype=np.float32)
        state[f"layers.{i}.bias"] = rng.standard_normal(2048, dtype=np.float32)
    rows = int(total_mb * 1e6 * 0.2 / 4 / 1024)
    state["embedding.weight"] = rng.standard_normal((rows, 1024), dtype=np.float32)
    state["optimizer.step"] = np.arange(1024, dtype=np.int64)
    return state


def timed_median(fn: Callable[[], Any], repeat: int, setup: Callable[[], None] | None = None) -> float:
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(total_mb: float, repeat: int, workdir: Path) -> dict[str, Any]:
    state = make_state(total_mb)
    nbytes = sum(a.nbytes for a in state.values())
    rows: list[dict[str, Any]] = []

    def clean(path: Path) -> Callable[[], None]:
        def run() -> None:
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)
        return run

    def record(method: str, save_s: float, restore_s: float | None, note: str) -> None:
        rows.append({"method": method, "save_s": save_s, "restore_s": restore_s, "note": note,
                     "save_mb_s": nbytes / 1e6 / save_s,
                     "restore_mb_s": None if restore_s is None else nbytes / 1e6 / restore_s})

    # weft, durable (default): fsync file + directory, sha256 in the manifest
    d = workdir / "weft"
    step = iter(range(10**6))
    save_s = timed_median(lambda: wt.Checkpoints(d, keep_last=1).save(next(step), state), repeat, clean(d))
    ck = wt.Checkpoints(d)
    restore_s = timed_median(lambda: ck.restore(), repeat)
    record("weft Checkpoints", save_s, restore_s, "fsync + rename, sha256 checked on restore")

    d2 = workdir / "weft-fast"
    save_s = timed_median(lambda: wt.Checkpoints(d2, keep_last=1, durable=False).save(next(step), state),
                          repeat, clean(d2))
    ck2 = wt.Checkpoints(d2, durable=False)
    restore_s = timed_median(lambda: ck2.restore(verify=False), repeat)
    record("weft (durable=False, verify=False)", save_s, restore_s, "atomic rename, no fsync, no sha256 check")

    # background: what the training step waits for (the copy); the write overlaps training
    d3 = workdir / "weft-bg"
    clean(d3)()
    with wt.Checkpoints(d3, keep_last=1, background=True) as ck3:
        blocked = []
        for _ in range(repeat):
            start = time.perf_counter()
            ck3.save(next(step), state)
            blocked.append(time.perf_counter() - start)
            ck3.wait()
    record("weft background (blocking part)", statistics.median(blocked), None,
           "training step blocked only for the copy")

    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        tensors = {k: torch.from_numpy(v) for k, v in state.items()}
        path = workdir / "state.pt"
        save_s = timed_median(lambda: torch.save(tensors, path), repeat)
        restore_s = timed_median(lambda: torch.load(path, weights_only=True), repeat)
        record("torch.save / torch.load", save_s, restore_s, f"torch {torch.__version__}, pickle zip, no fsync")

    path = workdir / "state.npz"

    def npz_load() -> None:
        with np.load(path) as f:
            _ = {k: f[k] for k in f.files}

    save_s = timed_median(lambda: np.savez(path, **state), repeat)
    restore_s = timed_median(npz_load, repeat)
    record("np.savez / np.load", save_s, restore_s, "zip of .npy, no fsync")

    try:
        from safetensors.numpy import load_file, save_file
    except ImportError:
        pass
    else:
        path = workdir / "state.safetensors"
        save_s = timed_median(lambda: save_file(state, str(path)), repeat)
        restore_s = timed_median(lambda: load_file(str(path)), repeat)
        record("safetensors.numpy", save_s, restore_s, "the safetensors package, no fsync")

    reference = next((r for r in rows if r["method"].startswith("torch")), rows[0])
    for r in rows:
        r["save_vs_torch"] = reference["save_s"] / r["save_s"]
        r["restore_vs_torch"] = (None if r["restore_s"] is None or reference["restore_s"] is None
                                 else reference["restore_s"] / r["restore_s"])
    return {"benchmark": "train_checkpoint", "state_bytes": nbytes, "arrays": len(state), "repeat": repeat,
            "reference": reference["method"], "python": sys.version.split()[0], "platform": platform.platform(),
            "cpus": os.cpu_count(), "rows": rows,
            "note": "ratios > 1 mean faster than the reference; medians of `repeat` runs"}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    names = [r["method"] for r in rows]
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    y = np.arange(len(rows))
    ax.barh(y - 0.2, [r["save_mb_s"] for r in rows], height=0.4, label="save")
    ax.barh(y + 0.2, [r["restore_mb_s"] or 0 for r in rows], height=0.4, label="restore")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("MB/s (higher is better)")
    ax.set_title(f"checkpoint of {result['state_bytes'] / 1e6:.0f} MB, {result['arrays']} arrays")
    ax.legend()
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"checkpoint save/restore, {result['state_bytes'] / 1e6:.0f} MB state "
                        f"(median of {result['repeat']}; ratio = {result['reference']} time / method time)")
    for column in ("method", "save s", "save MB/s", "save ratio", "restore s", "restore MB/s", "restore ratio"):
        table.add_column(column, justify="left" if column == "method" else "right")

    def fmt(v: float | None, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    for r in result["rows"]:
        table.add_row(r["method"], fmt(r["save_s"], ".3f"), fmt(r["save_mb_s"], ".0f"),
                      fmt(r["save_vs_torch"], ".2f") + "x", fmt(r["restore_s"], ".3f"),
                      fmt(r["restore_mb_s"], ".0f"),
                      fmt(r["restore_vs_torch"], ".2f") + ("x" if r["restore_vs_torch"] else ""))
    Console(width=140).print(table)
    for r in result["rows"]:
        print(f"  {r['method']}: {r['note']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100.0, help="state size in MB")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir on /tmp)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="weft-ckpt-bench-", dir=args.dir))
    try:
        result = bench(args.mb, args.repeat, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "train_checkpoint.json").write_text(json.dumps(result, indent=2))
    plot(result, RESULTS / "train_checkpoint.png")
    print_table(result)
    print(f"wrote {RESULTS / 'train_checkpoint.json'} and {RESULTS / 'train_checkpoint.png'}")


if __name__ == "__main__":
    main()
