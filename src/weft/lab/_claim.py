"""What an experiment tests: one claim, its two variants and the ratio that would confirm it.

Stdlib and ``weft.errors`` only: this module is imported inside the lab subprocess of
any interpreter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from weft.errors import ConfigError

__all__ = ["Claim", "Direction", "Metric"]

#: ``time`` in seconds or ``bytes`` of memory or output; lower is better for both.
Metric = Literal["time", "bytes"]
#: ``at_least``: the claim holds when the ratio is at least ``threshold``;
#: ``at_most``: when it is at most ``threshold`` (e.g. "threads give no speed-up").
Direction = Literal["at_least", "at_most"]


@dataclass(frozen=True, kw_only=True)
class Claim:
    """One claim about Python performance, stated so that a measurement can settle it.

    The measured ratio is ``baseline / candidate`` of the metric (lower is better for
    both metrics), so a ratio of 3.0 means the candidate is 3x faster, or 3x smaller.
    """

    name: str
    group: str
    text: str
    source: str
    baseline: str
    candidate: str
    threshold: float
    direction: Direction = "at_least"
    metric: Metric = "time"

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ConfigError(f"claim name must be an identifier (it names the experiment module), "
                              f"got {self.name!r}")
        if self.threshold <= 0:
            raise ConfigError(f"claim {self.name!r}: threshold must be > 0, got {self.threshold!r}")
        if self.baseline == self.candidate:
            raise ConfigError(f"claim {self.name!r}: baseline and candidate are both {self.baseline!r}; "
                              "name two different variants")
        if self.direction not in ("at_least", "at_most"):
            raise ConfigError(f"claim {self.name!r}: direction must be 'at_least' or 'at_most', "
                              f"got {self.direction!r}")
        if self.metric not in ("time", "bytes"):
            raise ConfigError(f"claim {self.name!r}: metric must be 'time' or 'bytes', got {self.metric!r}")

    @property
    def expected(self) -> str:
        """The claim's prediction as a ratio, e.g. ``list/generator >= 20x``."""
        sign = ">=" if self.direction == "at_least" else "<="
        return f"{self.baseline}/{self.candidate} {sign} {self.threshold:g}x"
