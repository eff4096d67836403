"""The experimental JIT (PYTHON_JIT=1) vs the same interpreter with it off."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from weft.lab._claim import Claim
from weft.lab._context import Context
from weft.lab._facts import jit_status

CLAIM = Claim(
    name="jit", group="interpreter",
    text="CPython's JIT (PYTHON_JIT=1) makes pure-Python code 30-50% faster.",
    source="articles on the 3.13/3.14 copy-and-patch JIT",
    baseline="jit_off", candidate="jit_on", threshold=1.3)

# Self-contained so the child needs nothing but the interpreter itself.
_CHILD = """
import json, sys, time
def work(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total
n, warm, reps = (int(a) for a in sys.argv[1:4])
for _ in range(warm):
    work(n)
out = []
for _ in range(reps):
    t = time.perf_counter(); work(n); out.append(time.perf_counter() - t)
print(json.dumps(out))
"""


#: A failure bound for one child run (a full-size run takes seconds).
_CHILD_TIMEOUT_SECONDS = 300.0


def child_samples(executable: str, jit: str, n: int, warmups: int, repeats: int) -> list[float]:
    """Timings of the workload in a fresh ``executable`` with ``PYTHON_JIT=jit``."""
    env = dict(os.environ, PYTHON_JIT=jit)
    out = subprocess.run([executable, "-c", _CHILD, str(n), str(warmups), str(repeats)],
                         env=env, capture_output=True, text=True, timeout=_CHILD_TIMEOUT_SECONDS, check=True)
    samples: list[float] = json.loads(out.stdout)
    return samples


def measure(ctx: Context) -> None:
    available, why = jit_status()
    if not available:
        ctx.skip(f"not measurable here: {why}")
    n = ctx.pick(full=2_000_000, quick=300_000, smoke=20_000)
    ctx.param("iterations", n)
    # Alternate off/on children in rounds so drift hits both alike.
    rounds = 3 if ctx.mode != "smoke" else 1
    per_round = max(1, ctx.repeats // rounds)
    for _ in range(rounds):
        for variant, flag in (("jit_off", "0"), ("jit_on", "1")):
            ctx.record(variant, child_samples(sys.executable, flag, n, ctx.warmups + 2, per_round))
