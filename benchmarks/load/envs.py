"""One virtual environment per peer and interpreter, under ``benchmarks/.envs/<peer>-<tag>``.

Idempotent: an environment whose stamp file records the same requirement set is reused.
A peer that cannot install on an interpreter (no wheel) is recorded with pip's reason and
skipped, never retried within the same requirement set. torch is pinned to its CPU wheel
(``torch==2.13.0+cpu``) so that pip can never pull CUDA packages; an environment that
nevertheless contains ``nvidia-*`` packages is rejected.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENVS = REPO / "benchmarks" / ".envs"
FT_CONSTRAINTS = REPO.parent / "shared" / "ft-constraints.txt"

#: pip requirements per peer (the workload module needs NumPy and Pillow everywhere)
PEERS: dict[str, list[str]] = {
    "torch": ["torch==2.13.0+cpu", "numpy", "pillow"],
    "torchdata": ["torch==2.13.0+cpu", "torchdata", "numpy", "pillow"],
    "spdl": ["spdl", "numpy", "pillow"],
    "grain": ["grain", "numpy", "pillow"],
}

#: Peers known not to install on an interpreter, with the reason (saves a slow failing pip run).
KNOWN_MISSING: dict[tuple[str, str], str] = {
    ("torch", "ft"): "torch 2.13.0 has no cp313t wheel; PyPI's newest cp313t wheel (2.12.0) is a CUDA build "
                     "that pulls 15 nvidia-* packages, which this benchmark refuses to install",
    ("torchdata", "ft"): "needs torch, which has no CPU-only wheel for CPython 3.13t (see torch)",
}


@dataclass(frozen=True, kw_only=True)
class Interpreter:
    tag: str        # "gil" or "ft"
    label: str      # "3.11" / "3.13t"
    weft_python: Path   # the repo venv where weft itself is installed
    base_python: str    # the interpreter peer environments are created from


def interpreter(tag: str, weft_venv: Path) -> Interpreter | None:
    python = weft_venv / "bin" / "python"
    if not python.exists():
        return None
    probe = subprocess.run(
        [str(python), "-c", "import sys, sysconfig; print(sys._base_executable); "
         "print('%d.%d' % sys.version_info[:2] + ('t' if sysconfig.get_config_var('Py_GIL_DISABLED') else ''))"],
        capture_output=True, text=True, check=True)
    base, label = probe.stdout.split()
    return Interpreter(tag=tag, label=label, weft_python=python, base_python=base)


def _log(message: str) -> None:
    print(f"[envs] {message}", file=sys.stderr, flush=True)


def ensure_env(peer: str, interp: Interpreter) -> tuple[Path | None, str]:
    """The peer's python for this interpreter, or (None, why not)."""
    known = KNOWN_MISSING.get((peer, interp.tag))
    if known:
        return None, known
    requirements = list(PEERS[peer])
    if interp.tag == "ft":
        requirements = [r for r in requirements if not r.startswith("numpy")] + ["numpy<2.5"]
    env = ENVS / f"{peer}-{interp.tag}"
    stamp = env / ".stamp"
    wanted = {"requirements": requirements, "python": interp.base_python}
    if stamp.exists():
        recorded = json.loads(stamp.read_text())
        if recorded.get("spec") == wanted:
            if recorded.get("ok"):
                return env / "bin" / "python", "ok"
            return None, str(recorded.get("reason", "installation failed earlier"))
    if env.exists():
        shutil.rmtree(env)
    _log(f"creating {env.relative_to(REPO)} ({interp.label}): pip install {' '.join(requirements)}")
    subprocess.run([interp.base_python, "-m", "venv", str(env)], check=True)
    cmd = [str(env / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--only-binary", ":all:", *requirements]
    if interp.tag == "ft" and FT_CONSTRAINTS.exists():
        cmd += ["-c", str(FT_CONSTRAINTS)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    ok = proc.returncode == 0
    reason = "ok"
    if ok:
        listing = subprocess.run([str(env / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
                                 capture_output=True, text=True).stdout
        cuda = [line for line in listing.splitlines() if line.lower().startswith("nvidia-")]
        if cuda:
            ok, reason = False, f"pip pulled CUDA packages ({', '.join(cuda[:3])}...): rejected"
    else:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR")]
        reason = "; ".join(errors[:2]) or proc.stderr.strip().splitlines()[-1:][0] if proc.stderr.strip() else "pip failed"
    if not ok:
        _log(f"{peer} on {interp.label}: not installed: {reason}")
        shutil.rmtree(env)
        env.mkdir(parents=True)
    stamp.write_text(json.dumps({"spec": wanted, "ok": ok, "reason": reason}))
    return (env / "bin" / "python", "ok") if ok else (None, reason)
