"""Load benchmark: weft.data against a serial loop, torch DataLoader, SPDL, Grain and torchdata.nodes.

A zoo of workloads of different shapes (``workloads.py``: pure Python on small items,
NumPy-heavy, mixed NumPy + Python, 256 KB and 4 MB results, image decode + augment,
tokenisation, waits of 5 ms and 50 ms), each at a short length (about one second of serial
work) and a long one (about thirty). Every configuration runs one cold epoch, timed from
building its pipeline: start-up counts, as it does for a user.

One run, the same data, the same per-item functions for every contender;
each configuration runs in its own fresh process so that the peak RSS and the CPU seconds of
its whole process tree are its own (``harness.py``). Peers live in their own virtual
environments under ``benchmarks/.envs`` (created here, idempotently: ``envs.py``); weft runs
in the repository's ``.venv`` (GIL) and ``.venv-ft`` (free-threaded 3.13t, GIL off).

    python benchmarks/load/run.py --quick                 # short length only (~15 minutes)
    python benchmarks/load/run.py --workloads text,spectro --python ft --lengths long
    python benchmarks/load/run.py --setup-only            # environments and data only

The CPU lock ``/tmp/weft-cpu.lock`` is taken once per workload (never for the whole run),
unless the lock is already held by a process that started this one (``flock ... run.py``).
Writes ``benchmarks/results/load.json``, ``load.png`` and ``load.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import envs  # noqa: E402
import report  # noqa: E402
from harness import compile_sources, run_config  # noqa: E402

import workloads  # noqa: E402

REPO = HERE.parents[1]
RESULTS = REPO / "benchmarks" / "results"
LOCK = Path("/tmp/weft-cpu.lock")
IO_THREADS = 32


def usable_cores() -> int:
    return len(os.sched_getaffinity(0))


def default_venvs() -> Path:
    """Where ``.venv`` and ``.venv-ft`` are: this checkout, or the main checkout of a git
    worktree (whose venvs import the main checkout's weft: children then get this
    checkout's ``src`` first on PYTHONPATH)."""
    if (REPO / ".venv").exists():
        return REPO
    git = REPO / ".git"
    if git.is_file():  # a worktree: "gitdir: <main>/.git/worktrees/<name>"
        gitdir = Path(git.read_text().split(":", 1)[1].strip())
        main = gitdir.parents[2]
        if (main / ".venv").exists():
            return main
    return REPO


# --------------------------------------------------------------------------- the matrix
#: Serial seconds of work per epoch at each length (the item counts in workloads.py).
LENGTHS = ("short", "long")


def configurations(workload: str, tag: str, cores: int, quick: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """(contender, label, options) for one workload on one interpreter, in table order."""
    io = workloads.WORKLOADS[workload].kind == "io"
    out: list[tuple[str, str, dict[str, Any]]] = [("serial", "serial loop", {})]
    weft_workers = IO_THREADS if io else cores
    # waiting work: weft sizes its threads to the waits (workers="auto"); the fixed 32
    # threads every peer runs are shown too
    out.append(("weft", "weft", {"workers": "auto" if io else weft_workers, "backend": "auto", "prefetch": 2}))
    if io:
        out.append(("weft", f"weft x{IO_THREADS}", {"workers": IO_THREADS, "backend": "auto", "prefetch": 2}))
    # weft's own backends, so that auto can be held to the best of them
    if not io and tag == "gil":
        out.append(("weft", "weft thread", {"workers": weft_workers, "backend": "thread", "prefetch": 2}))
        out.append(("weft", "weft process", {"workers": weft_workers, "backend": "process", "prefetch": 2}))
    out.append(("threads", "thread pool", {"workers": weft_workers}))
    if tag == "gil":
        # DataLoader at its best prefetch_factor: the full run tries several, the report keeps the best
        for factor in ((4,) if quick else (2, 4, 8)):
            out.append(("torch", f"DataLoader (prefetch {factor})", {"workers": cores, "prefetch_factor": factor}))
        if io:  # what a DataLoader user would do for I/O: more workers than cores
            out.append(("torch", "DataLoader (16 workers)", {"workers": 16, "prefetch_factor": 4}))
        out.append(("torchdata", "torchdata.nodes",
                    {"workers": IO_THREADS, "method": "thread"} if io else {"workers": cores, "method": "process"}))
    if io:
        out.append(("spdl", "SPDL (MT)", {"mode": "mt", "threads": IO_THREADS}))
    else:
        out.append(("spdl", "SPDL (MT)", {"mode": "mt", "threads": cores}))
        if tag == "gil":
            out.append(("spdl", "SPDL (MP)", {"mode": "mp", "workers": cores}))
    if tag == "gil":
        if io:
            out.append(("grain", "Grain", {"workers": 0, "threads": IO_THREADS, "buffer": 500}))
        else:
            # one reader thread per worker process: with the default 16, the threads of each
            # worker fight over its GIL (measured: text 4,003 vs 8,393 items/s, images 827 vs 1,060)
            out.append(("grain", "Grain", {"workers": cores, "threads": 1, "buffer": 500}))
    return out


#: Every configuration runs one cold epoch, timed from building the pipeline to its last
#: batch: start-up is part of what a user waits for, and with nothing after the epoch no
#: prefetched item is counted for free.
COLD_EPOCH = {"warmup": 0, "epochs": 1, "cooldown": 0}


# --------------------------------------------------------------------------- the CPU lock
def _lock_holders() -> set[int]:
    try:
        inode = os.stat(LOCK).st_ino
    except FileNotFoundError:
        return set()
    holders = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/locks").read_text().splitlines():
            parts = line.split()
            if len(parts) > 5 and parts[1] == "FLOCK" and parts[5].split(":")[-1] == str(inode):
                holders.add(int(parts[4]))
    return holders


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat[stat.rindex(")") + 2:].split()[1])
    return pids


@contextlib.contextmanager
def cpu_lock(enabled: bool) -> Iterator[None]:
    if not enabled or _lock_holders() & _ancestors():
        yield
        return
    with open(LOCK, "a") as f:
        t = time.monotonic()
        fcntl.flock(f, fcntl.LOCK_EX)
        waited = time.monotonic() - t
        if waited > 1:
            print(f"  (waited {waited:.0f} s for the CPU lock)", flush=True)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- running
def run_workload(name: str, length: str, interps: list[envs.Interpreter], args: argparse.Namespace,
                 skipped: list[dict[str, str]]) -> list[dict[str, Any]]:
    w = workloads.WORKLOADS[name]
    n = args.items or (w.quick_items if length == "short" else w.items)
    cores = usable_cores()
    rows: list[dict[str, Any]] = []
    with cpu_lock(not args.no_lock):
        workloads.ensure_data(name)
        plan: list[tuple[envs.Interpreter, str, str, dict[str, Any], Path]] = []
        for interp in interps:
            for contender, label, options in configurations(name, interp.tag, cores, args.quick):
                if args.contenders and contender not in args.contenders:
                    continue
                if contender in ("serial", "weft", "threads"):
                    python: Path | None = interp.weft_python
                else:
                    python, why = envs.ensure_env(contender, interp)
                    if python is None:
                        skipped.append({"workload": name, "python": interp.label, "contender": label, "reason": why})
                        continue
                assert python is not None
                plan.append((interp, contender, label, options, python))
        # Repeats go round the whole plan (A B C A B C), not A A B B C C: on a shared
        # machine a slow spell then costs every contender one attempt, not one contender all.
        best: dict[int, dict[str, Any]] = {}
        attempts: dict[int, list[dict[str, Any]]] = {i: [] for i in range(len(plan))}
        for _round in range(args.repeat):
            for i, (interp, contender, label, options, python) in enumerate(plan):
                if attempts[i] and not attempts[i][-1]["ok"]:
                    continue  # a failed configuration is not retried
                cap = (w.serial_quick_items if length == "short" else w.serial_items) if contender == "serial" else None
                items = min(n, cap) if cap and not args.items else n
                spec = {"workload": name, "contender": contender, "options": options, "items": items, **COLD_EPOCH}
                # weft's own contenders import this checkout's weft, whichever venv runs them
                extra = {"PYTHONPATH": str(REPO / "src")} if contender in ("serial", "weft", "threads") else None
                result = run_config(str(python), spec, timeout=args.timeout, env_extra=extra)
                ok = result["ok"]
                rate = result["window_items"] / result["window_s"] if ok else 0.0
                print(f"  {name:8} {length:5} {interp.label:6} {label:26} "
                      + (f"{rate:9.0f} items/s  first batch {result['time_to_first_batch_s'] * 1e3:6.0f} ms  "
                         f"rss {result['peak_rss_bytes'] / 2**20:6.0f} MB"
                         if ok else f"FAILED: {result.get('error', '')[-400:]}"), flush=True)
                result["items_per_s"] = rate
                backends = (result.get("info") or {}).get("backends") or []
                attempts[i].append({"items_per_s": rate, "ok": ok,
                                    "backend": ", ".join(b["backend"] for b in backends) or None})
                if i not in best or rate > best[i]["items_per_s"]:
                    best[i] = result
        for i, (interp, contender, label, options, _python) in enumerate(plan):
            rows.append({"workload": name, "length": length, "python": interp.label, "interpreter": interp.tag,
                         "contender": contender, "label": label, "options": options, "items": n,
                         "cores": cores, **best[i], "attempts": attempts[i]})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the short length only, one DataLoader setting")
    parser.add_argument("--workloads", default=",".join(workloads.WORKLOADS),
                        help=f"comma list of {','.join(workloads.WORKLOADS)}")
    parser.add_argument("--lengths", default=None, help="short (~1 s of serial work), long (~30 s) or both "
                        "(default: short with --quick, else both)")
    parser.add_argument("--python", default="gil,ft",
                        help="interpreters: gil (.venv, CPython with the GIL), ft (.venv-ft, 3.13t GIL off)")
    parser.add_argument("--contenders", default="", help="only these (serial,weft,threads,torch,torchdata,spdl,grain)")
    parser.add_argument("--repeat", type=int, default=None, help="runs per configuration, best kept (default 1)")
    parser.add_argument("--items", type=int, default=0, help="items per epoch (default: the workload's)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per configuration")
    parser.add_argument("--venvs", type=Path, default=default_venvs(),
                        help="directory holding .venv and .venv-ft (default: this checkout's, or its main checkout's)")
    parser.add_argument("--no-lock", action="store_true", help="do not take /tmp/weft-cpu.lock")
    parser.add_argument("--setup-only", action="store_true", help="create the environments and data, then stop")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results directory")
    parser.add_argument("--name", default="load", help="base name of the result files")
    # benchmarks/run.sh passes its own arguments through; ignore ones meant for other benchmarks
    parser.add_argument("--render", type=Path, default=None,
                        help="only re-render .md and .png from this results JSON")
    args, unknown = parser.parse_known_args(argv)
    if args.render is not None:
        data = json.loads(args.render.read_text())
        summary = report.summarize(data["rows"])
        markdown = report.markdown(data["rows"], summary, data["meta"])
        (args.output / f"{args.name}.md").write_text(markdown)
        report.chart(data["rows"], args.output / f"{args.name}.png")
        print(markdown)
        return 0
    if unknown:
        print(f"load: ignoring arguments {unknown}", file=sys.stderr)
    args.repeat = args.repeat or 1
    lengths = [x for x in (args.lengths or ("short" if args.quick else "short,long")).split(",") if x]
    for x in lengths:
        if x not in LENGTHS:
            parser.error(f"unknown length {x!r}: choose from {', '.join(LENGTHS)}")
    args.contenders = [c for c in args.contenders.split(",") if c]
    names = [x for x in args.workloads.split(",") if x]
    for x in names:
        if x not in workloads.WORKLOADS:
            parser.error(f"unknown workload {x!r}: choose from {', '.join(workloads.WORKLOADS)}")

    interps: list[envs.Interpreter] = []
    skipped: list[dict[str, str]] = []
    for tag in [t for t in args.python.split(",") if t]:
        venv = args.venvs / (".venv" if tag == "gil" else ".venv-ft")
        interp = envs.interpreter(tag, venv)
        if interp is None:
            skipped.append({"workload": "*", "python": tag, "contender": "*", "reason": f"{venv} does not exist"})
            print(f"load: skipping {tag}: {venv} does not exist (make test creates it)", file=sys.stderr)
            continue
        interps.append(interp)

    if args.setup_only:
        for interp in interps:
            for peer in envs.PEERS:
                python, why = envs.ensure_env(peer, interp)
                print(f"{peer:10} {interp.label:6} {python or why}")
        with cpu_lock(not args.no_lock):
            for x in names:
                workloads.ensure_data(x)
        return 0

    for interp in interps:  # weft's sources and the workloads, as a user's first import leaves them
        compile_sources(interp.weft_python, HERE.parents[1] / "src" / "weft", HERE)
    started = time.time()
    print(f"load benchmark: {', '.join(names)} on {', '.join(i.label for i in interps)}; "
          f"{usable_cores()} usable cores; {'quick' if args.quick else 'full'} mode", flush=True)
    rows: list[dict[str, Any]] = []
    for length in lengths:
        for name in names:
            rows += run_workload(name, length, interps, args, skipped)
    meta = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "usable_cores": usable_cores(),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "interpreters": {i.label: str(i.weft_python) for i in interps},
        "repeat": args.repeat,
        "wall_s": time.time() - started,
        "workloads": {n: workloads.WORKLOADS[n].description for n in names},
        "lengths": lengths,
        "items": {n: {"short": workloads.WORKLOADS[n].quick_items, "long": workloads.WORKLOADS[n].items}
                  for n in names},
        "skipped": skipped,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    summary = report.summarize(rows)
    (args.output / f"{args.name}.json").write_text(json.dumps({"meta": meta, "rows": rows, "summary": summary},
                                                              indent=1, default=str))
    markdown = report.markdown(rows, summary, meta)
    (args.output / f"{args.name}.md").write_text(markdown)
    report.chart(rows, args.output / f"{args.name}.png")
    print()
    print(markdown)
    print(f"wrote {args.output / args.name}.json, .md, .png ({meta['wall_s']:.0f} s)")
    failed = [r for r in rows if not r.get("ok")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
