"""Virtual environments of the formats benchmark's peers, under ``benchmarks/.envs``.

Idempotent: an environment whose stamp records the same requirements is reused; one
that failed to install is recorded with pip's reason and not retried for the same
requirements. Ray gets its own too: Ray Data's Parquet reader needs pandas, which weft's
venvs do not install.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENVS = REPO / "benchmarks" / ".envs"

#: pip requirements per peer
PEERS: dict[str, list[str]] = {
    "datasets": ["datasets", "numpy<2.5"],
    "webdataset": ["webdataset", "numpy<2.5"],
    "spdl": ["spdl", "numpy<2.5"],
    "ray": ["ray[data]", "numpy<2.5"],
}


def _log(message: str) -> None:
    print(f"[envs] {message}", file=sys.stderr, flush=True)


def ensure(peer: str, base_python: str) -> tuple[Path | None, str]:
    """The peer's python, or (None, why not)."""
    env = ENVS / f"formats-{peer}"
    stamp = env / ".stamp"
    wanted = {"requirements": PEERS[peer], "python": base_python}
    if stamp.exists():
        recorded = json.loads(stamp.read_text())
        if recorded.get("spec") == wanted:
            return (env / "bin" / "python", "ok") if recorded.get("ok") else (None, str(recorded.get("reason")))
    shutil.rmtree(env, ignore_errors=True)
    _log(f"creating {env.relative_to(REPO)}: pip install {' '.join(PEERS[peer])}")
    subprocess.run([base_python, "-m", "venv", str(env)], check=True)
    proc = subprocess.run([str(env / "bin" / "python"), "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", "--only-binary", ":all:", *PEERS[peer]],
                          capture_output=True, text=True)
    ok = proc.returncode == 0
    reason = "ok"
    if not ok:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
        reason = "; ".join(errors[:2]) or "pip failed"
        _log(f"{peer}: not installed: {reason}")
        shutil.rmtree(env)
        env.mkdir(parents=True)
    stamp.write_text(json.dumps({"spec": wanted, "ok": ok, "reason": reason}))
    return (env / "bin" / "python", "ok") if ok else (None, reason)
