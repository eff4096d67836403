"""Serve benchmark: one MLP (NumPy and its ONNX export) behind weft, LitServe, MLServer and a
plain FastAPI endpoint, loaded by wrk from a separate process.

    .venv/bin/python benchmarks/serve/run.py [--quick]

Each peer gets its own virtual environment under benchmarks/.envs/<peer> (created once).
Every server binds 127.0.0.1, is started here in its own process group and stopped after
its runs. The CPU lock (/tmp/weft-cpu.lock) is held per server, from start to stop, so
other work can run between servers; do not wrap this script in flock yourself.

Per server: wrk at concurrency 1, 16, 64, 256 (closed loop), then an open-loop run offering
twice the best rate seen (requests leave on a fixed schedule, up to 512 in flight). "At
capacity" is the closed-loop point with the highest 2xx rate, the one whose rate is doubled.
The closed-loop points send the same static body to every server. For servers that speak V2
the capacity point is run once more, and the overload point run, with each request's send
time as its "id", which they echo: the latency of every 2xx answer is then timed exactly,
also under overload where fast 503s are mixed in (the others only give wrk's quantiles, an
upper bound for the accepted answers). Timed requests cost wrk a little CPU, which on a
shared 2-core machine is taken from the server, so they are kept off the compared points.
Writes benchmarks/results/serve.json, serve.png and serve.md, and the README's Serve table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import importlib.util
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _envs  # noqa: E402
import _report  # noqa: E402
import _wrk  # noqa: E402
import model  # noqa: E402

ROOT = HERE.parents[1]
SERVERS = HERE / "servers"
LOCK = "/tmp/weft-cpu.lock"
MAX_BATCH = 32
MAX_DELAY_MS = 2.0
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
# One BLAS thread per call for every server: they all run calls side by side (threads,
# processes or uvicorn workers), and OpenBLAS threads under concurrent callers collapse
# throughput (the plain endpoint fell from ~1100 to ~3 req/s at concurrency 64 without it).
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "WEFT_ONNX_THREADS": "1"}
OVERLOAD_CONNECTIONS = 512
OVERLOAD_TIMEOUT_S = 2.0


@dataclass
class Target:
    server: str  # weft, litserve, mlserver, fastapi (+ "weft-3.13t")
    kind: str  # numpy | onnx
    argv: list[str]
    path: str
    body: str  # "v2" | "native"
    version: str
    settings: str
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    peer: bool = True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def cpu_lock() -> Iterator[None]:
    with open(LOCK, "a") as fd:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def pkg_version(python: Path | str, dist: str) -> str:
    proc = subprocess.run([str(python), "-c", f"import importlib.metadata as m; print(m.version({dist!r}))"],
                          capture_output=True, text=True)
    return proc.stdout.strip() or "?"


# -- model data ---------------------------------------------------------------------------
def prepare_model(quiet: bool = False) -> np.ndarray:
    """Weights from examples/mlp.py (the served example) into an .npz, then the ONNX export.

    Returns the reference answer for the benchmark's request input.
    """
    example = ROOT / "examples" / "mlp.py"
    weights, source = model.build_weights(), "benchmarks/serve/model.py"
    try:
        spec = importlib.util.spec_from_file_location("weft_example_mlp", example)
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        m = mod.Model(model.SEED)
        m.load()
        weights = {}
        for i, (w, b) in enumerate(m.weights):
            weights[f"w{i}"], weights[f"b{i}"] = np.asarray(w), np.asarray(b)
        source = "examples/mlp.py"
    except (OSError, ImportError, AttributeError) as e:
        print(f"examples/mlp.py not usable ({e}); using benchmarks/serve/model.py", flush=True)
    fresh = not model.WEIGHTS.exists()
    if not fresh:
        old = model.load_weights()
        fresh = old.keys() != weights.keys() or any(not np.array_equal(old[k], weights[k]) for k in weights)
    if fresh:
        model.save_weights(weights)
    if fresh or not model.ONNX.exists():
        py = _envs.ensure("onnx")
        if py is None:
            raise RuntimeError("cannot build the ONNX export: the onnx environment did not install")
        subprocess.run([str(py), str(HERE / "model.py"), "onnx"], check=True, capture_output=True)
    if not quiet:
        print(f"model: MLP {' -> '.join(map(str, model.SIZES))} fp32, weights from {source} "
              f"(seed {model.SEED}); ONNX export {model.ONNX.relative_to(ROOT)}", flush=True)
    return model.forward(weights, model.request_input())


def write_bodies(tmp: Path) -> dict[str, Path]:
    x = model.request_input()
    v2 = {"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                      "data": x.ravel().tolist()}]}
    native = {"x": x.tolist()}
    out = {}
    for name, doc in (("v2", v2), ("native", native)):
        out[name] = tmp / f"{name}.json"
        out[name].write_text(json.dumps(doc))
    return out


def answer_of(doc: Any, body: str) -> np.ndarray:
    if body == "v2":
        out = next(o for o in doc["outputs"] if o["name"] == "y")
        return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])
    return np.asarray(doc["y"], dtype=np.float32)


# -- targets -------------------------------------------------------------------------------
def weft_targets(kinds: list[str], with_ft: bool) -> list[Target]:
    out: list[Target] = []
    interpreters = [("weft", ROOT / ".venv" / "bin" / "python")]
    ft = ROOT / ".venv-ft" / "bin" / "python"
    if with_ft and ft.exists():
        interpreters.append(("weft-3.13t", ft))
    for server, py in interpreters:
        if not py.exists():
            continue
        cli = py.parent / "weft"
        has_cli = cli.exists() and subprocess.run([str(cli), "serve", "--help"], capture_output=True).returncode == 0
        version = pkg_version(py, "weft")
        for kind in kinds:
            spec = f"{ROOT / 'examples' / 'mlp.py'}:Model" if kind == "numpy" else f"mlp={model.ONNX}"
            opts = ["--max-batch-size", str(MAX_BATCH), "--max-delay-ms", str(MAX_DELAY_MS),
                    "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning"]
            argv = [str(cli), "serve", spec, *opts] if has_cli else [str(py), str(SERVERS / "weft_server.py"), spec, *opts]
            how = "weft serve" if has_cli else "weft.serve.Server.run()"
            out.append(Target(server, kind, argv, "/v2/models/mlp/infer", "v2", version,
                              f"{how}, dynamic batching max {MAX_BATCH} / {MAX_DELAY_MS:g} ms, default workers",
                              peer=False))
    return out


def peer_targets(kinds: list[str], peers: list[str], tmp: Path, problems: dict[str, str]) -> list[Target]:
    out: list[Target] = []
    for peer in peers:
        py = _envs.ensure(peer)
        if py is None:
            log = _envs.ENVS / peer / ".failed"
            problems[peer] = f"environment did not install (see {log.relative_to(ROOT)})"
            continue
        dist = {"litserve": "litserve", "mlserver": "mlserver", "fastapi": "fastapi"}[peer]
        version = pkg_version(py, dist)
        for kind in kinds:
            if peer == "litserve":
                argv = [str(py), str(SERVERS / "litserve_server.py"), "--port", "{port}", "--kind", kind,
                        "--max-batch-size", str(MAX_BATCH), "--batch-timeout", str(MAX_DELAY_MS / 1000)]
                out.append(Target(peer, kind, argv, "/predict", "native", version,
                                  f"LitAPI(max_batch_size={MAX_BATCH}, batch_timeout={MAX_DELAY_MS / 1000:g}), "
                                  "1 worker (workers_per_device=1)"))
            elif peer == "mlserver":
                repo = tmp / f"mlserver-{kind}"
                argv = [str(py.parent / "mlserver"), "start", str(repo)]
                out.append(Target(peer, kind, argv, "/v2/models/mlp/infer", "v2",
                                  f"{version} (uvloop {pkg_version(py, 'uvloop')})",
                                  f"adaptive batching max_batch_size={MAX_BATCH}, max_batch_time="
                                  f"{MAX_DELAY_MS / 1000:g}; parallel_workers=1 (default)",
                                  env={"PYTHONPATH": str(SERVERS)}, cwd=repo))
            else:
                argv = [str(py), "-m", "uvicorn", "fastapi_server:app", "--app-dir", str(SERVERS),
                        "--host", "127.0.0.1", "--port", "{port}", "--workers", str(CORES),
                        "--no-access-log", "--log-level", "warning"]
                out.append(Target(peer, kind, argv, "/predict", "native",
                                  f"{version} (uvicorn {pkg_version(py, 'uvicorn')})",
                                  f"uvicorn --workers {CORES} (one per core), sync endpoint, no batching",
                                  env={"WEFT_BENCH_KIND": kind}))
    return out


def mlserver_repo(target: Target, port: int) -> None:
    repo = target.cwd
    assert repo is not None
    (repo / "mlp").mkdir(parents=True, exist_ok=True)
    (repo / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
        "debug": False, "parallel_workers": 1,
    }))
    (repo / "mlp" / "model-settings.json").write_text(json.dumps({
        "name": "mlp", "implementation": "mlserver_runtime.MLPRuntime",
        "max_batch_size": MAX_BATCH, "max_batch_time": MAX_DELAY_MS / 1000,
        "parameters": {"extra": {"kind": target.kind}},
    }))


# -- server lifecycle ------------------------------------------------------------------------
def start(target: Target, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    if target.server == "mlserver":
        mlserver_repo(target, port)
    argv = [a.replace("{port}", str(port)) for a in target.argv]
    env = {**os.environ, **THREAD_ENV, **target.env}
    env.pop("PYTHONHOME", None)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=str(target.cwd or tempfile.gettempdir()), start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's own process group, SIGKILL after 20 s."""
    for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # Children (worker processes) may outlive the leader: wait for the group to empty.
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def post(url: str, body: bytes, timeout: float = 10.0) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read()[:300]


def wait_ready(proc: subprocess.Popen[bytes], url: str, body: bytes, kind: str, expected: np.ndarray,
               timeout: float = 180.0) -> float:
    """Seconds until the server answers the benchmark request correctly."""
    t0 = time.monotonic()
    last: Any = None
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with code {proc.returncode} before answering")
        try:
            status, doc = post(url, body, timeout=5.0)
        except (OSError, ValueError) as e:
            last = e
            time.sleep(0.2)
            continue
        if status == 200:
            got = answer_of(doc, kind)
            if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-3, atol=1e-4):
                raise RuntimeError(f"wrong answer: {got.ravel()[:4]} expected {expected.ravel()[:4]}")
            return time.monotonic() - t0
        last = (status, doc)
        # The request itself is wrong: waiting will not help. (Not 400: MLServer answers
        # 400 "Model mlp is not ready yet" while it loads.)
        if status in (405, 415, 422):
            raise RuntimeError(f"refused the benchmark request: {status} {doc!r:.300}")
        time.sleep(0.2)
    raise RuntimeError(f"not ready after {timeout:.0f} s (last: {last!r:.300})")


def listeners(pid: int) -> list[str]:
    """TCP listen addresses of the server's process tree (to confirm 127.0.0.1 only)."""
    try:
        import psutil
    except ImportError:
        return []
    found: set[str] = set()
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
    for p in procs:
        try:
            conns = p.net_connections(kind="inet")
        except (psutil.Error, AttributeError):
            continue
        for c in conns:
            if c.status == psutil.CONN_LISTEN:
                found.add(f"{c.laddr.ip}:{c.laddr.port}")
    return sorted(found)


def tree_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) used so far by the server's live process tree."""
    try:
        import psutil
    except ImportError:
        return None
    total = 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def measured(proc: subprocess.Popen[bytes], fn: Any) -> dict[str, Any]:
    """Run one wrk point; add the server tree's CPU use (cores busy, CPU ms per 2xx answer)."""
    c0 = tree_cpu_s(proc.pid)
    point = fn()
    c1 = tree_cpu_s(proc.pid)
    out: dict[str, Any] = point.to_json()
    if c0 is not None and c1 is not None and point.duration_s:
        used = max(0.0, c1 - c0)
        out["server_cores_busy"] = round(used / point.duration_s, 2)
        ok = point.ok_rps * point.duration_s
        out["server_cpu_ms_per_ok"] = round(1e3 * used / ok, 3) if ok else None
    return out


def bench_target(target: Target, wrk: str, bodies: dict[str, Path], expected: np.ndarray,
                 args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    rec: dict[str, Any] = {"server": target.server, "model": target.kind, "version": target.version,
                           "settings": target.settings, "request": target.body, "path": target.path,
                           "points": [], "overload": None, "status": "ok"}
    port = free_port()
    url = f"http://127.0.0.1:{port}{target.path}"
    body = bodies[target.body]
    log_path = logs / f"{target.server}-{target.kind}.log"
    with cpu_lock():
        print(f"[{target.server} / {target.kind}] starting ({target.settings})", flush=True)
        proc = start(target, port, log_path)
        try:
            rec["startup_s"] = round(wait_ready(proc, url, body.read_bytes(), target.body, expected), 2)
            rec["listen"] = listeners(proc.pid)
            echo = target.body == "v2"
            rec["ok_latency"] = "timed from the echoed id" if echo else "wrk's quantiles over all answers"
            _wrk.run(wrk, url, body, concurrency=64, duration_s=args.warmup, threads=1)
            for c in args.concurrency:
                q = measured(proc, lambda c=c: _wrk.run(wrk, url, body, concurrency=c, duration_s=args.duration,
                                                        threads=1 if c < 64 else 2))
                rec["points"].append(q)
                print(f"  c={c:<4d} {q['ok_rps']:8.1f} req/s  p50 {q['p50_ms']:7.2f} ms  p99 {q['p99_ms']:7.2f} ms"
                      f"  server cores {q.get('server_cores_busy', '?')}  "
                      f"non-2xx {q['non_2xx'] or '-'}  socket errors {_nonzero(q['socket_errors']) or '-'}", flush=True)
            if rec["points"] and not args.no_overload:
                cap = max(rec["points"], key=lambda q: q["ok_rps"])
                rate = 2 * cap["ok_rps"]
                if echo:
                    c = cap["concurrency"]
                    timed = measured(proc, lambda: _wrk.run(wrk, url, body, concurrency=c, duration_s=args.duration,
                                                            threads=1 if c < 64 else 2, echo_id=True))
                    rec["capacity_timed"] = timed
                    print(f"  c={c:<4d} timed {timed['ok_rps']:8.1f} req/s  2xx p50 {timed['ok_p50_ms']} ms  "
                          f"p99 {timed['ok_p99_ms']} ms (wrk's p99 {timed['p99_ms']:.2f} ms)", flush=True)
                    cap = {**cap, "ok_p99_ms": timed["ok_p99_ms"]}
                over = measured(proc, lambda: _wrk.run(wrk, url, body, concurrency=OVERLOAD_CONNECTIONS,
                                                       duration_s=args.duration, rate=rate,
                                                       timeout_s=OVERLOAD_TIMEOUT_S, threads=2, echo_id=echo))
                over["capacity_rps"] = cap["ok_rps"]
                over["capacity_concurrency"] = cap["concurrency"]
                # Compared like with like: the raw timing of the 2xx answers on both sides where the
                # server echoes the id (wrk's own quantiles include its coordinated-omission samples).
                over["capacity_p99_ms"] = cap["ok_p99_ms"] if cap.get("ok_p99_ms") is not None else cap["p99_ms"]
                over["capacity_p99_wrk_ms"] = cap["p99_ms"]
                rec["overload"] = over
                accepted = (f"accepted p50 {over['ok_p50_ms']:.2f} / p99 {over['ok_p99_ms']:.2f} ms"
                            if over["ok_p99_ms"] is not None else f"accepted p99 <= {over['p99_ok_upper_ms']:.2f} ms")
                print(f"  2x   offered {rate:7.1f}/s: {over['ok_rps']:8.1f} 2xx/s  statuses {over['statuses']}  "
                      f"{accepted} (capacity p99 {over['capacity_p99_ms']:.2f} ms at c={cap['concurrency']})  "
                      f"socket errors {_nonzero(over['socket_errors']) or '-'}", flush=True)
            if proc.poll() is not None:
                raise RuntimeError(f"exited with code {proc.returncode} during the load")
        except Exception as e:  # a failing server is reported, the others still run
            rec["status"] = f"failed: {e}"
            tail = log_path.read_text(errors="replace").strip().splitlines()[-8:] if log_path.exists() else []
            rec["log_tail"] = tail
            print(f"  FAILED: {e}\n    " + "\n    ".join(tail), flush=True)
        finally:
            stop(proc)
    return rec


def _nonzero(d: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in d.items() if v}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="5 s per point instead of 10 s")
    ap.add_argument("--duration", type=float, help="seconds per point")
    ap.add_argument("--servers", default="weft,weft-3.13t,litserve,mlserver,fastapi",
                    help="comma-separated subset of weft,weft-3.13t,litserve,mlserver,fastapi")
    ap.add_argument("--models", default="numpy,onnx", help="numpy, onnx or both")
    ap.add_argument("--concurrency", default="1,16,64,256")
    ap.add_argument("--no-overload", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--no-readme", action="store_true", help="do not update README.md")
    ap.add_argument("--merge", action="store_true",
                    help="keep the other servers' results from an earlier serve.json in --out")
    args = ap.parse_args(argv)
    args.duration = args.duration or (5.0 if args.quick else 10.0)
    args.warmup = 2.0 if args.quick else 3.0
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    kinds = [k.strip() for k in args.models.split(",") if k.strip()]
    t_start = time.monotonic()

    wrk = _envs.ensure_wrk()
    if wrk is None:
        print("serve benchmark: wrk is not available and could not be installed", file=sys.stderr)
        return 1
    expected = prepare_model()
    problems: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="weft-serve-bench-") as tmpdir:
        tmp = Path(tmpdir)
        bodies = write_bodies(tmp)
        targets: list[Target] = []
        if "weft" in servers or "weft-3.13t" in servers:
            targets += [t for t in weft_targets(kinds, "weft-3.13t" in servers) if t.server in servers]
        targets += peer_targets(kinds, [p for p in ("litserve", "mlserver", "fastapi") if p in servers],
                                tmp, problems)
        # NumPy on every server first, then ONNX; the free-threaded weft last (not a target).
        order = ["weft", "litserve", "mlserver", "fastapi", "weft-3.13t"]
        targets.sort(key=lambda t: (t.server == "weft-3.13t", kinds.index(t.kind), order.index(t.server)))
        logs = model.DATA / "logs"
        records: list[dict[str, Any]] = []
        earlier: list[dict[str, Any]] = []
        if args.merge and (args.out / "serve.json").exists():
            doc = json.loads((args.out / "serve.json").read_text())
            earlier = doc["servers"]
            problems.update({k: v for k, v in doc.get("not_installed", {}).items() if k not in problems})
        for t in targets:
            records.append(bench_target(t, wrk, bodies, expected, args, logs))
            # Written after every server, so an interrupted run still leaves its numbers.
            write_results(args, wrk, problems, merged(earlier, records), t_start, final=False)
    result = write_results(args, wrk, problems, merged(earlier, records), t_start, final=True)
    return 0 if all(r["status"] == "ok" for r in result["servers"]) else 1


def merged(earlier: list[dict[str, Any]], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """This run's records plus earlier ones for servers/models not run now, in table order."""
    ran = {(r["server"], r["model"]) for r in records}
    out = [r for r in earlier if (r["server"], r["model"]) not in ran] + records
    order = ["weft", "litserve", "mlserver", "fastapi", "weft-3.13t"]
    out.sort(key=lambda r: (r["server"] == "weft-3.13t", r["model"] != "numpy",
                            order.index(r["server"]) if r["server"] in order else 99))
    return out


def write_results(args: argparse.Namespace, wrk: str, problems: dict[str, str], records: list[dict[str, Any]],
                  t_start: float, *, final: bool) -> dict[str, Any]:
    have = {(r["server"], r["model"]) for r in records if r["status"] == "ok"}
    complete = all((s, k) in have for s in ("weft", "litserve", "mlserver", "fastapi") for k in ("numpy", "onnx"))
    result: dict[str, Any] = {
        "benchmark": "serve",
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "partial": not (final and complete),
        "elapsed_s": round(time.monotonic() - t_start, 1),
        "machine": {"cpus": CORES, "platform": platform.platform(), "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine()},
        "config": {"model": f"MLP {' -> '.join(map(str, model.SIZES))} fp32 (examples/mlp.py weights, seed 0)",
                   "request": "one 1x512 FP32 tensor: V2 JSON for weft and MLServer, {\"x\": [[...]]} for "
                              "LitServe and FastAPI",
                   "max_batch_size": MAX_BATCH, "max_delay_ms": MAX_DELAY_MS,
                   "duration_s": args.duration, "warmup_s": args.warmup, "concurrency": args.concurrency,
                   "overload": {"connections": OVERLOAD_CONNECTIONS, "timeout_s": OVERLOAD_TIMEOUT_S,
                                "offered": "2 x the best 2xx rate of the closed-loop points, fixed schedule",
                                "capacity": "the closed-loop point with the best 2xx rate; its 2xx p99"},
                   "ok_latency": "V2 servers, capacity re-run and overload: each 2xx answer timed from its "
                                 "echoed request id (send time); otherwise wrk's quantiles over all answers",
                   "thread_env": THREAD_ENV, "load_generator": _wrk.version(wrk)},
        "not_installed": problems,
        "servers": records,
    }
    result["targets"] = _report.evaluate(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve.json").write_text(json.dumps(result, indent=2) + "\n")
    md = _report.markdown(result)
    (args.out / "serve.md").write_text(md)
    try:
        _report.plot(result, args.out / "serve.png")
    except Exception as e:
        print(f"plot failed: {e}", file=sys.stderr)
    if not final:
        return result
    if not args.no_readme and not result["partial"]:
        _report.update_readme(ROOT / "README.md", md)
    print()
    print(md)
    print(f"wrote {args.out / 'serve.json'}, serve.md, serve.png in {result['elapsed_s']:.0f} s")
    return result


if __name__ == "__main__":
    sys.exit(main())
