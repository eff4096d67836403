"""The cluster example decodes on a Ray cluster (and on Dask), stops, resumes, and sees
every image exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cluster_fixtures import SRC_DIR, TESTS_DIR

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "cluster.py"


def _run(*args: str, env: dict[str, str]) -> str:
    env = {**env, "PYTHONPATH": os.pathsep.join([TESTS_DIR, SRC_DIR, env.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(EXAMPLE), "--images", "48", "--stop-after", "2", *args],
                         capture_output=True, text=True, timeout=300, env=env, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.mark.slow
def test_cluster_example_on_ray_resumes_exactly(ray_cluster: Any) -> None:
    stdout = _run(env={**os.environ, "RAY_ADDRESS": ray_cluster.address})
    assert "stopped after step 2" in stdout and "resumed at step 2" in stdout
    assert "first run 32 images, second run 16: every image exactly once" in stdout
    assert "backend ray" in stdout


@pytest.mark.slow
def test_cluster_example_on_dask_resumes_exactly(dask_cluster: Any) -> None:
    stdout = _run("--backend", "dask", "--address", dask_cluster.scheduler_address, env=dict(os.environ))
    assert "first run 32 images, second run 16: every image exactly once" in stdout
    assert "backend dask" in stdout
