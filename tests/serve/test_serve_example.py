"""The serving examples run as users would run them."""

from __future__ import annotations

import subprocess
import sys

import pytest
from serve_subprocess import SUBPROCESS_TEST_TIMEOUT


@pytest.mark.slow  # a fresh interpreter serving a 20 MB model to 16 client threads
@pytest.mark.timeout(SUBPROCESS_TEST_TIMEOUT)
def test_serve_client_example_runs() -> None:
    # 7-10 s idle; 12 s (3.11) and 38-50 s (3.13t) with a CPU hog on every core
    out = subprocess.run([sys.executable, "examples/serve_client.py"], capture_output=True, text=True,
                         timeout=SUBPROCESS_TEST_TIMEOUT - 30)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "served 64 requests" in out.stdout
    assert "largest difference" in out.stdout
