"""Start ``weft serve`` as a real subprocess on a free port and stop it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

#: The longest a server may take to start. A fresh free-threaded interpreter importing
#: FastAPI, uvicorn and NumPy took 8-20 s here while a CPU hog ran on every core (2 s
#: idle); tests that start one carry a longer pytest timeout (SUBPROCESS_TEST_TIMEOUT).
STARTUP_TIMEOUT = 120
SUBPROCESS_TEST_TIMEOUT = 300


@contextmanager
def weft_serve(*args: str, env: dict[str, str] | None = None,
               timeout: float = STARTUP_TIMEOUT) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Yields (base URL, process); SIGTERMs and reaps it on exit."""
    cmd = [sys.executable, "-m", "weft", "serve", *args, "--port", "0", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    url: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("weft serve: ") and "; listening on " in line:
                url.append(line.rsplit(" ", 1)[1].strip())
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not ready.wait(timeout) or not url:
            proc.kill()
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"weft serve did not start: {err[-2000:]}")
        yield url[0], proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STARTUP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
