"""One CPU-bound Python function on every weft backend, side by side.

    python examples/parallel_map.py [--items 64] [--size 60000]

Prints items/s per backend, the speed-up over serial, and the reason each backend
was chosen (``auto`` measures the function before it decides).
"""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.table import Table

import weft.exec
from weft import runtime


def collatz_steps(n: int) -> int:
    """Pure-Python CPU work that holds the GIL: total Collatz steps below ``n``."""
    total = 0
    for start in range(1, n):
        x = start
        while x != 1:
            x = x // 2 if x % 2 == 0 else 3 * x + 1
            total += 1
    return total


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=48)
    parser.add_argument("--size", type=int, default=3000)
    args = parser.parse_args(argv)
    items = [args.size] * args.items
    workers = runtime.usable_cores()
    expected = collatz_steps(args.size)

    table = Table(title=f"collatz_steps({args.size}) x {args.items} items, {workers} workers")
    for column in ("backend", "items/s", "vs serial", "why"):
        table.add_column(column)
    rates: dict[str, float] = {}
    for backend in ("serial", "thread", "process", "auto"):
        with weft.exec.create(backend, workers=workers) as ex:
            start = time.perf_counter()
            results = list(ex.map(collatz_steps, items))
            rate = len(items) / (time.perf_counter() - start)
            stats = ex.statistics()
        assert results == [expected] * len(items), f"{backend} returned wrong results"
        rates[backend] = rate
        table.add_row(stats.backend, f"{rate:,.1f}", f"{rate / rates['serial']:.2f}x", stats.reason)
    console = Console()
    gil = "on" if runtime.gil_enabled() else "off"
    console.print(f"Python {runtime.facts(check_imports=False).version}, GIL {gil}, {workers} usable cores")
    console.print(table)
    return rates


if __name__ == "__main__":
    main()
