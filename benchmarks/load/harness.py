"""Run one configuration in a fresh subprocess and measure its whole process tree.

- Peak RSS: every ~20 ms the RSS of the child and of all its descendants is summed
  (``/proc/<pid>/statm``; descendants found through ``/proc/<pid>/task/*/children``).
  The proportional set size (PSS, shared pages split between the processes that map
  them) is summed every ~200 ms as a second opinion, since forked workers share pages
  that a plain RSS sum counts once per process.
- CPU seconds: user+system of the whole tree. For the measured window (after the warm-up
  epoch) the sampler keeps the last value it read for every process of the tree and the
  child marks the window on a pipe; for the whole run ``os.wait4`` gives the child's
  rusage including every descendant it reaped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS = os.sysconf("SC_CLK_TCK")
CHILD = Path(__file__).resolve().parent / "child.py"


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError, OSError):
        return None


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        text = _read(f"/proc/{pid}/task/{tid}/children")
        if text:
            out.extend(int(x) for x in text.split())
    return out


def _cpu_seconds(pid: int) -> float | None:
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def _rss(pid: int) -> int:
    text = _read(f"/proc/{pid}/statm")
    return int(text.split()[1]) * _PAGE if text else 0


def _pss(pid: int) -> int:
    text = _read(f"/proc/{pid}/smaps_rollup")
    if not text:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def _group_members(pgid: int) -> list[int]:
    """Processes still alive in process group ``pgid`` (workers a contender left behind)."""
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            text = _read(f"/proc/{name}/stat")
            if text and int(text[text.rindex(")") + 2:].split()[2]) == pgid:
                members.append(int(name))
    return members


@dataclass
class TreeSampler:
    root: int
    interval: float = 0.02
    pss_every: int = 10
    peak_rss: int = 0
    peak_pss: int = 0
    max_processes: int = 0
    samples: int = 0
    cpu_last: dict[int, float] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def tree(self) -> list[int]:
        pids, frontier = [self.root], [self.root]
        while frontier:
            nxt: list[int] = []
            for pid in frontier:
                nxt.extend(_children(pid))
            pids.extend(nxt)
            frontier = nxt
        return pids

    def sample(self) -> None:
        pids = self.tree()
        rss = 0
        with self._lock:
            for pid in pids:
                cpu = _cpu_seconds(pid)
                if cpu is not None:
                    self.cpu_last[pid] = max(cpu, self.cpu_last.get(pid, 0.0))
                rss += _rss(pid)
            self.peak_rss = max(self.peak_rss, rss)
            self.max_processes = max(self.max_processes, len(pids))
            self.samples += 1
        if self.samples % self.pss_every == 1:
            pss = sum(_pss(pid) for pid in pids)
            self.peak_pss = max(self.peak_pss, pss)

    def cpu_total(self) -> float:
        with self._lock:
            return sum(self.cpu_last.values())

    def mark(self, what: str) -> None:
        self.sample()
        self.marks[what] = self.cpu_total()

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._stop.set()


def compile_sources(python: str | Path, *dirs: Path) -> None:
    """Compile ``dirs``, and ``python``'s standard library where it has no bytecode (an
    interpreter unpacked rather than installed), before anything is timed: else every
    child compiles what it imports, and the contender importing the most pays the most."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    stdlib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
                            check=True, capture_output=True, text=True, env=env).stdout.strip()
    # the interpreter's own tests and tools are never imported; some of them do not compile on purpose
    subprocess.run([str(python), "-m", "compileall", "-q", "-j0", "-x", "/(test|tests|idlelib|lib2to3|turtledemo)/",
                    stdlib], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    subprocess.run([str(python), "-m", "compileall", "-q", *map(str, dirs)], check=True,
                   stdout=subprocess.DEVNULL, env=env)


def run_config(python: str, spec: dict[str, Any], *, timeout: float = 900.0,
               env_extra: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``child.py`` with ``python`` on ``spec``; returns its result plus tree measurements."""
    read_fd, write_fd = os.pipe()
    env = dict(os.environ)
    env["WEFT_BENCH_MARK_FD"] = str(write_fd)
    env["PYTHONUNBUFFERED"] = "1"
    # one thread per BLAS/OpenMP pool: the contenders parallelize, not the libraries
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    env.pop("PYTHONPATH", None)
    # Bytecode is written and reused, as on a user's machine: pip compiles the peers'
    # installed packages, while weft and the workloads run from source; a shell that
    # forbids writing bytecode would make every child (and every worker process it
    # spawns) compile them again, a cost no user pays twice (see compile_sources).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if env_extra:
        env.update(env_extra)
    started = time.monotonic()
    proc = subprocess.Popen([python, str(CHILD), json.dumps(spec)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, pass_fds=(write_fd,),
                            start_new_session=True)
    os.close(write_fd)
    sampler = TreeSampler(proc.pid)
    sampler_thread = threading.Thread(target=sampler.run, daemon=True)
    sampler_thread.start()

    def read_marks() -> None:
        with os.fdopen(read_fd, "r") as marks:
            for line in marks:
                sampler.mark(line.split()[0])

    mark_thread = threading.Thread(target=read_marks, daemon=True)
    mark_thread.start()
    out_chunks: list[str] = []
    err_chunks: list[str] = []
    readers = [threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True),  # type: ignore[union-attr]
               threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)]  # type: ignore[union-attr]
    for t in readers:
        t.start()
    timed_out = False
    status = rusage = None
    deadline = started + timeout
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            pid, status, rusage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.01)
    proc.returncode = os.waitstatus_to_exitcode(status)
    leftovers = _group_members(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # workers the contender left behind must not skew the next run
    wall = time.monotonic() - started
    sampler.stop()
    sampler_thread.join()
    for t in readers:
        t.join(10)
    mark_thread.join(10)
    stdout = "".join(out_chunks)
    stderr = "".join(err_chunks)
    result: dict[str, Any] = {}
    for line in stdout.splitlines():
        if line.startswith("WEFT-BENCH-RESULT "):
            result = json.loads(line[len("WEFT-BENCH-RESULT "):])
    out: dict[str, Any] = {
        "ok": proc.returncode == 0 and bool(result) and not timed_out,
        "returncode": proc.returncode,
        "timed_out": timed_out,
        "wall_s": wall,
        "peak_rss_bytes": sampler.peak_rss,
        "peak_pss_bytes": sampler.peak_pss,
        "max_processes": sampler.max_processes,
        "leftover_processes": len(leftovers),
        "cpu_total_s": rusage.ru_utime + rusage.ru_stime if rusage is not None else None,
        "cpu_sampled_s": sampler.cpu_total(),
        **result,
    }
    if "start" in sampler.marks and "end" in sampler.marks:
        out["window_cpu_s"] = sampler.marks["end"] - sampler.marks["start"]
    if not out["ok"]:
        tail = "\n".join((stderr or stdout).strip().splitlines()[-25:])
        out["error"] = result.get("error") or tail or f"exit code {proc.returncode}"
    return out


if __name__ == "__main__":  # manual check: python harness.py <python> '<spec json>'
    print(json.dumps(run_config(sys.argv[1], json.loads(sys.argv[2])), indent=2))
