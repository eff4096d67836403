"""Verdicts from samples: pure arithmetic, no timing, so it can be tested on synthetic data.

The ratio is ``median(baseline) / median(candidate)``. Its spread comes from the
interquartile ranges of both variants: the lowest plausible ratio is
``q1(baseline) / q3(candidate)`` and the highest ``q3(baseline) / q1(candidate)``.
A claim holds when that whole interval lies on the claimed side of the threshold,
does not hold when it lies wholly on the other side, and is inconclusive when the
interval straddles the threshold (the noise is larger than the effect).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from weft.errors import ConfigError
from weft.lab._claim import Direction

__all__ = ["Summary", "Verdict", "VerdictKind", "judge", "summarize"]

VerdictKind = Literal["holds", "does not hold", "inconclusive"]


@dataclass(frozen=True, kw_only=True)
class Summary:
    """Median, quartiles and extremes of one variant's samples."""

    n: int
    median: float
    q1: float
    q3: float
    min: float
    max: float

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1


def summarize(samples: Sequence[float]) -> Summary:
    """Summarise samples; quartiles by the inclusive method (exact for n >= 2)."""
    if not samples:
        raise ConfigError("cannot summarise an empty list of samples: measure the variant at least once")
    values = sorted(float(s) for s in samples)
    if any(math.isnan(v) or v < 0 for v in values):
        raise ConfigError(f"samples must be non-negative numbers (seconds or bytes), got {values!r}")
    if len(values) == 1:
        q1 = q3 = values[0]
    else:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return Summary(n=len(values), median=statistics.median(values), q1=q1, q3=q3,
                   min=values[0], max=values[-1])


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """The measured ratio with its spread, and what it says about the claim."""

    kind: VerdictKind
    ratio: float
    low: float
    high: float
    threshold: float
    direction: Direction

    def describe(self) -> str:
        """``3.10x (2.90-3.30)``: the ratio and its interquartile spread."""
        if math.isclose(self.low, self.high, rel_tol=1e-9):
            return f"{_fmt(self.ratio)}x"
        return f"{_fmt(self.ratio)}x ({_fmt(self.low)}-{_fmt(self.high)})"


def _fmt(value: float) -> str:
    if math.isinf(value):
        return "inf"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _div(num: float, den: float) -> float:
    if den > 0:
        return num / den
    return math.inf if num > 0 else 1.0


def judge(baseline: Sequence[float], candidate: Sequence[float], *, threshold: float,
          direction: Direction = "at_least") -> Verdict:
    """Judge ``baseline / candidate`` against ``threshold`` in the claimed ``direction``."""
    if threshold <= 0:
        raise ConfigError(f"threshold must be > 0, got {threshold!r}")
    if direction not in ("at_least", "at_most"):
        raise ConfigError(f"direction must be 'at_least' or 'at_most', got {direction!r}")
    b, c = summarize(baseline), summarize(candidate)
    ratio = _div(b.median, c.median)
    low = min(ratio, _div(b.q1, c.q3))
    high = max(ratio, _div(b.q3, c.q1))
    kind: VerdictKind
    if direction == "at_least":
        kind = "holds" if low >= threshold else "does not hold" if high < threshold else "inconclusive"
    else:
        kind = "holds" if high <= threshold else "does not hold" if low > threshold else "inconclusive"
    return Verdict(kind=kind, ratio=ratio, low=low, high=high, threshold=threshold,
                   direction=direction)
