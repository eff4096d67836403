"""The load driver: wrk in its own process, POSTing one JSON body through request.lua."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LUA = Path(__file__).resolve().parent / "request.lua"


@dataclass(frozen=True, kw_only=True)
class Point:
    """One wrk run against one server."""

    mode: str  # "closed" (fixed concurrency) or "paced" (open loop at offered_rps)
    concurrency: int
    duration_s: float
    rps: float  # answers per second, any status
    ok_rps: float  # 2xx answers per second
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p99_ok_upper_ms: float  # upper bound on the p99 of 2xx answers (overall quantile, 503s mixed in)
    max_ms: float
    requests: int
    statuses: dict[str, int]
    socket_errors: dict[str, int]
    offered_rps: float | None = None
    # Exact latency of the 2xx answers, timed from the send time echoed in the V2 "id"
    # (echo_id=True); None when the server does not echo it.
    ok_p50_ms: float | None = None
    ok_p90_ms: float | None = None
    ok_p99_ms: float | None = None
    ok_max_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def non_2xx(self) -> dict[str, int]:
        return {k: v for k, v in self.statuses.items() if not k.startswith("2")}

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["non_2xx"] = self.non_2xx
        return d


def run(
    wrk: str,
    url: str,
    body_file: Path,
    *,
    concurrency: int,
    duration_s: float,
    timeout_s: float = 5.0,
    rate: float | None = None,
    threads: int = 1,
    echo_id: bool = False,
) -> Point:
    threads = max(1, min(threads, concurrency))
    env = {
        **os.environ,
        "WRK_BODY_FILE": str(body_file),
        "WRK_THREADS": str(threads),
        "WRK_RATE": str(rate or 0),
        "WRK_ECHO_ID": "1" if echo_id else "0",
    }
    cmd = [
        wrk, f"-t{threads}", f"-c{concurrency}", f"-d{max(1, round(duration_s))}s",
        f"--timeout={max(1, round(timeout_s))}s", "-s", str(LUA), url,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                          timeout=duration_s + timeout_s + 60)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRK_RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout[-800:]} {proc.stderr[-800:]}")
    r = json.loads(line.removeprefix("WRK_RESULT "))
    secs = r["duration_us"] / 1e6
    statuses = {k: int(v) for k, v in sorted(r["statuses"].items())}
    ok = sum(v for k, v in statuses.items() if k.startswith("2"))
    lat = r["latency_us"]
    errors = {k: int(v) for k, v in r["errors"].items() if k != "status"}
    okl = r.get("ok_latency_ms") or {}
    exact = bool(okl.get("measured")) and okl.get("timed") == ok
    return Point(
        mode="paced" if rate else "closed",
        concurrency=concurrency,
        duration_s=round(secs, 3),
        rps=round(r["requests"] / secs, 1),
        ok_rps=round(ok / secs, 1),
        p50_ms=lat["p50"] / 1e3,
        p90_ms=lat["p90"] / 1e3,
        p99_ms=lat["p99"] / 1e3,
        p99_ok_upper_ms=lat["p99_ok_upper"] / 1e3,
        max_ms=lat["max"] / 1e3,
        requests=int(r["requests"]),
        statuses=statuses,
        socket_errors=errors,
        offered_rps=round(rate, 1) if rate else None,
        ok_p50_ms=okl["p50"] if exact else None,
        ok_p90_ms=okl["p90"] if exact else None,
        ok_p99_ms=okl["p99"] if exact else None,
        ok_max_ms=okl["max"] if exact else None,
    )


def version(wrk: str) -> str:
    proc = subprocess.run([wrk, "--version"], capture_output=True, text=True)
    words = (proc.stdout + proc.stderr).split()
    return " ".join(words[:2]) if words else "wrk"
