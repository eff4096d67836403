"""Run a command while CPU-bound processes occupy every usable core.

    python tools/cpu_hog.py [--per-core N] -- make test-gil test-ft

A busy CI runner or laptop gives the test suite less CPU than a quiet machine; tests
that pass only on a quiet machine depend on timing. The hogs run at normal priority
and end with this process (each one also checks that its parent is alive, so a hard
kill of this script leaves nothing behind).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

_HOG = (
    "import os, sys\n"
    "parent = int(sys.argv[1])\n"
    "while os.getppid() == parent:\n"
    "    for _ in range(2_000_000):\n"
    "        pass\n"
)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-core", type=int, default=1, help="hog processes per usable core (default 1)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    count = max(1, args.per_core) * usable_cores()
    hogs = [subprocess.Popen([sys.executable, "-c", _HOG, str(os.getpid())]) for _ in range(count)]
    print(f"cpu_hog: {count} CPU-bound processes running beside: {' '.join(command)}", flush=True)
    try:
        return subprocess.call(command)
    finally:
        for hog in hogs:
            hog.send_signal(signal.SIGKILL)
        for hog in hogs:
            hog.wait()


if __name__ == "__main__":
    sys.exit(main())
