"""The serving examples run as users would run them."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow  # a fresh interpreter serving a 10 MB model to 16 client threads
def test_serve_client_example_runs() -> None:
    out = subprocess.run([sys.executable, "examples/serve_client.py"], capture_output=True, text=True, timeout=100)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "served 64 requests" in out.stdout
    assert "largest difference" in out.stdout
