"""Lab: measure common Python performance claims on this machine and its interpreters.

Run it as ``weft lab``. Each experiment (one module in :mod:`weft.lab.experiments`)
states a :class:`Claim`, times two or more variants in a fresh subprocess of each
interpreter, and gets a :class:`Verdict` from :func:`judge`: holds, does not hold,
or inconclusive when the spread straddles the claimed threshold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from weft.lab._claim import Claim
from weft.lab._registry import available_experiments
from weft.lab._verdict import Summary, Verdict, judge, summarize

if TYPE_CHECKING:
    from weft.lab._lab import ExperimentResult, LabConfig, LabReport, run_lab

__all__ = [
    "Claim",
    "ExperimentResult",
    "LabConfig",
    "LabReport",
    "Summary",
    "Verdict",
    "available_experiments",
    "judge",
    "run_lab",
    "summarize",
]

_LAZY = {"ExperimentResult", "LabConfig", "LabReport", "run_lab"}


def __getattr__(name: str) -> Any:
    # The orchestration imports subprocess machinery the lab subprocess never needs.
    if name in _LAZY:
        from weft.lab import _lab
        return getattr(_lab, name)
    raise AttributeError(f"module 'weft.lab' has no attribute {name!r}")
