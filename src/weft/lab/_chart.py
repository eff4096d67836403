"""One PNG per experiment group: the measured ratio of each claim on each interpreter, its
spread as an error bar and the claim's threshold as a mark. matplotlib is imported here only."""

from __future__ import annotations

from pathlib import Path

from weft.lab._lab import ExperimentResult, LabReport

__all__ = ["write_charts"]

_COLOURS = {"holds": "#2e7d32", "does not hold": "#c62828", "inconclusive": "#9e9e9e"}
#: Figure size in inches: room for the title and axis label, plus one row per result.
_WIDTH_INCHES = 9.0
_BASE_HEIGHT_INCHES = 1.2
_ROW_HEIGHT_INCHES = 0.45
#: Resolution of the PNGs: readable labels at the 7-8 pt fonts used, files of tens of KB.
_DPI = 110
#: An infinite upper spread (a candidate measured at zero) is drawn this many times the ratio.
_INFINITE_SPREAD_FACTOR = 10


def write_charts(report: LabReport, out: Path) -> list[Path]:
    """Write ``<group>.png`` for every group with at least one measured ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[ExperimentResult]] = {}
    for r in report.results:
        if r.verdict is not None:
            groups.setdefault(r.claim.group, []).append(r)
    written = []
    for group, results in sorted(groups.items()):
        height = _BASE_HEIGHT_INCHES + _ROW_HEIGHT_INCHES * len(results)
        fig, ax = plt.subplots(figsize=(_WIDTH_INCHES, height))
        try:
            labels = []
            for y, r in enumerate(results):
                v = r.verdict
                assert v is not None
                finite_high = v.high if v.high != float("inf") else v.ratio * _INFINITE_SPREAD_FACTOR
                # Bars start at 1.0 (no effect), so their direction shows which variant won.
                ax.barh(y, v.ratio - 1.0, left=1.0, color=_COLOURS[v.kind], alpha=0.85)
                ax.annotate(v.describe(), (max(v.ratio, 1.0), y), xytext=(4, 0),
                            textcoords="offset points", va="center", fontsize=7)
                ax.errorbar(v.ratio, y, xerr=[[max(0.0, v.ratio - v.low)],
                                              [max(0.0, finite_high - v.ratio)]],
                            fmt="none", ecolor="black", capsize=3)
                ax.plot([v.threshold], [y], marker="|", markersize=18, color="black")
                labels.append(f"{r.name} [{r.interpreter}]")
            ax.set_yticks(range(len(results)))
            ax.set_yticklabels(labels, fontsize=8)
            ax.invert_yaxis()
            ax.set_xscale("log")
            ax.axvline(1.0, color="black", linewidth=0.8)
            ax.set_xlabel("baseline / candidate (log scale; | = claimed threshold; "
                          "green holds, red does not, grey inconclusive)", fontsize=8)
            ax.set_title(f"weft lab: {group} ({report.mode})")
            fig.tight_layout()
            path = out / f"{group}.png"
            fig.savefig(path, dpi=_DPI)
            written.append(path)
        finally:
            plt.close(fig)
    return written
