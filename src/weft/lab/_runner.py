"""Runs one experiment in this (fresh) interpreter and writes its raw result as JSON.

``python -m weft.lab._runner NAME --mode quick --result FILE``. The parent puts
weft's source directory on ``PYTHONPATH``, so the interpreter under test needs no
weft installed; everything imported here is stdlib (experiments import NumPy or
numba themselves and skip, with the reason, when they are absent).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from typing import Any

from weft.errors import ConfigError
from weft.lab._context import Context, Mode, Skip
from weft.lab._facts import interpreter_facts
from weft.lab._registry import load

__all__ = ["main", "run_experiment"]


def run_experiment(name: str, mode: Mode) -> dict[str, Any]:
    """Measure ``name`` here and return the raw, JSON-ready result."""
    module = load(name)
    if not hasattr(module, "measure"):
        raise ConfigError(f"experiment {name!r} is derived from other runs by combine(); "
                          "it is not measured on its own")
    ctx = Context(mode)
    started = time.perf_counter()
    status, reason = "ok", ""
    try:
        module.measure(ctx)
        claim = module.CLAIM
        missing = [v for v in (claim.baseline, claim.candidate) if v not in ctx.samples]
        if missing:
            status, reason = "error", f"measure() recorded no samples for {missing}"
    except Skip as exc:
        status, reason = "skipped", str(exc)
    except Exception as exc:  # reported, not raised: one broken experiment must not stop the lab
        status, reason = "error", f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    return {
        "name": name,
        "mode": mode,
        "status": status,
        "reason": reason,
        "samples": ctx.samples,
        "units": ctx.units,
        "params": ctx.params,
        "notes": ctx.notes,
        "threshold": ctx.threshold,
        "seconds": time.perf_counter() - started,
        "interpreter": interpreter_facts(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m weft.lab._runner")
    parser.add_argument("name")
    parser.add_argument("--mode", choices=["smoke", "quick", "full"], default="full")
    parser.add_argument("--result", help="write the JSON here instead of stdout")
    args = parser.parse_args(argv)
    result = run_experiment(args.name, args.mode)
    text = json.dumps(result)
    if args.result:
        with open(args.result, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
