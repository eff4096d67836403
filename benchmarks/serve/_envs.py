"""Per-peer virtual environments under benchmarks/.envs/<peer>, created idempotently.

Each environment is created once; a stamp file holding the requirement list marks it
complete, so an interrupted install is redone and a changed requirement list rebuilds it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
ENVS = ROOT / "benchmarks" / ".envs"

# The torch-free peers only need NumPy for the MLP and onnxruntime for its ONNX export.
PEERS: dict[str, list[str]] = {
    "litserve": ["litserve==0.2.19", "numpy", "onnxruntime"],
    # MLServer 1.7.1 on Python 3.11 crashes its workers with uvloop >= 0.21.
    "mlserver": ["mlserver==1.7.1", "uvloop<0.21", "numpy", "onnxruntime"],
    # The plain endpoint: FastAPI on uvicorn with its standard extras (uvloop, httptools).
    "fastapi": ["fastapi", "uvicorn[standard]", "numpy", "onnxruntime"],
    # Only used to build the ONNX graph with the onnx helper API.
    "onnx": ["onnx", "numpy"],
}


def _base_python() -> str:
    """A CPython 3.11 for the peers (MLServer 1.7 does not support newer ones)."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return os.environ.get("WEFT_BENCH_PEER_PYTHON", base)


def env_python(peer: str) -> Path:
    return ENVS / peer / "bin" / "python"


def ensure(peer: str) -> Path | None:
    """Create (or reuse) the environment for ``peer``; returns its python or None on failure."""
    reqs = PEERS[peer]
    env = ENVS / peer
    stamp = env / ".stamp"
    want = hashlib.sha256("\n".join(reqs).encode()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == want and env_python(peer).exists():
        return env_python(peer)
    log.info("creating benchmark environment %s (%s)", env, " ".join(reqs))
    print(f"  setting up {env.relative_to(ROOT)}: {' '.join(reqs)}", flush=True)
    if env.exists():
        shutil.rmtree(env)
    ENVS.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            [_base_python(), "-c", f"import venv; venv.create({str(env)!r}, with_pip=True)"],
            check=True,
        )
    except (subprocess.CalledProcessError, OSError):
        venv.create(env, with_pip=True)
    pip = [str(env_python(peer)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    proc = subprocess.run([*pip, *reqs], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        print(f"  could not install {peer}: {tail}", flush=True)
        (env / ".failed").write_text(proc.stdout + proc.stderr)
        return None
    stamp.write_text(want + "\n")
    return env_python(peer)


def ensure_wrk() -> str | None:
    """Path of wrk, installing the Debian package when it is missing and we may."""
    found = shutil.which("wrk")
    if found:
        return found
    print("  wrk not found: installing it with apt-get", flush=True)
    sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if sudo is None or not shutil.which("apt-get"):
        print("  cannot install wrk (no apt-get or no root); install the 'wrk' package", flush=True)
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "wrk"]):
        proc = subprocess.run([*sudo, *cmd], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(f"  {' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}", flush=True)
            return None
    return shutil.which("wrk")
