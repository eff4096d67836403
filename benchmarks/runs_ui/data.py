"""The benchmark's runs, generated the same way for weft and for MLflow (no weft import here).

10,000 runs: 9,999 sweep runs with four params, one tag and two metrics of 50 steps each
(999,900 points), and one long run whose ``loss`` has 1,000,000 points.
"""

from __future__ import annotations

import math
import random

N_RUNS = 10_000
STEPS = 50
LONG_POINTS = 1_000_000
START = 1_700_000_000.0


def run_spec(i: int) -> dict[str, object]:
    """Name, params and tags of run ``i``."""
    rng = random.Random(i)
    params = {"lr": round(10 ** rng.uniform(-4, -1), 6), "batch": rng.choice([16, 32, 64, 128]),
              "depth": rng.randint(2, 12), "opt": rng.choice(["adam", "sgd", "adamw"])}
    tags = {"baseline": "true"} if i % 10 == 0 else {"sweep": f"s{i % 7}"}
    return {"name": f"run-{i:05d}", "params": params, "tags": tags, "created": START + i * 60.0}


def run_points(i: int) -> list[tuple[str, int, float, float]]:
    """(key, step, value, wall time) of sweep run ``i``."""
    rng = random.Random(-i - 1)
    spec = run_spec(i)
    lr = float(spec["params"]["lr"])  # type: ignore[index]
    t0 = float(spec["created"])  # type: ignore[arg-type]
    out = []
    for step in range(STEPS):
        loss = 2.0 * math.exp(-step * lr * 20) + rng.random() * 0.05
        acc = 1.0 - loss / 2.5
        out.append(("loss", step, loss, t0 + step))
        out.append(("acc", step, acc, t0 + step))
    return out


def long_points() -> list[tuple[str, int, float, float]]:
    """The long run's 1,000,000-point loss history (one spike, one dip)."""
    out = []
    for step in range(LONG_POINTS):
        value = 1.0 / (1.0 + step / 10_000) + 0.05 * math.sin(step / 777.0)
        if step == 654_321:
            value = 50.0
        if step == 123_456:
            value = -50.0
        out.append(("loss", step, value, START + step * 0.01))
    return out
