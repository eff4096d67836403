"""``weft lab`` end to end: the report files, and the report built from synthetic results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from weft.lab import judge
from weft.lab._chart import write_charts
from weft.lab._interpreters import find_free_threaded, probe
from weft.lab._lab import ExperimentResult, LabReport
from weft.lab._registry import load
from weft.lab._report import markdown

PNG = b"\x89PNG\r\n\x1a\n"


def _lab(*args: str, timeout: float = 110) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "weft", "lab", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_cli_writes_markdown_json_and_charts(tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = _lab("--smoke", "--python", sys.executable, "--only", "z85", "--only", "listcomp",
                "--only", "generator_memory", "--only", "ft_single_thread", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "weft lab" in proc.stdout and "z85" in proc.stdout
    data = json.loads((out / "results.json").read_text())
    assert data["mode"] == "smoke"
    assert [i["path"] for i in data["interpreters"]] == [sys.executable]
    names = [r["name"] for r in data["results"]]
    # ft_single_thread pulls in the runs it is derived from; it comes last
    assert set(names) == {"z85", "listcomp", "generator_memory", "threads_gil", "threads_free",
                          "ft_single_thread"}
    assert names[-1] == "ft_single_thread"
    by_name = {r["name"]: r for r in data["results"]}
    z = by_name["z85"]
    assert z["status"] == "ok" and z["outcome"] in ("holds", "does not hold", "inconclusive")
    assert z["verdict"]["ratio"] == pytest.approx(1.0667, rel=1e-3)  # 4/3 over 5/4, exactly
    assert z["summaries"]["base64"]["n"] == 3
    # one interpreter cannot give a cross-interpreter comparison: skipped, with the reason
    assert by_name["ft_single_thread"]["status"] == "skipped"
    assert "interpreters run" in by_name["ft_single_thread"]["reason"]
    report = (out / "report.md").read_text()
    assert "| `z85` |" in report and "## Claims that did not hold" in report
    for group in ("encoding", "python", "memory"):
        assert (out / f"{group}.png").read_bytes().startswith(PNG)


def test_cli_lists_experiments_and_rejects_unknown_names(tmp_path: Path) -> None:
    listing = _lab("--list")
    assert listing.returncode == 0 and "membership" in listing.stdout
    bad = _lab("--only", "nope", "--out", str(tmp_path))
    assert bad.returncode == 2 and "unknown lab experiment" in bad.stdout
    assert not (tmp_path / "report.md").exists()


def _other_interpreter() -> str | None:
    """A free-threaded interpreter other than this one, when this one has the GIL."""
    me = probe(sys.executable, "test")
    if me.free_threaded:
        return None
    found = find_free_threaded(Path.cwd())
    return found[0] if found else None


@pytest.mark.slow
@pytest.mark.skipif(_other_interpreter() is None,
                    reason="needs a GIL interpreter running the tests and a free-threaded one to find")
def test_cli_combines_two_interpreters(tmp_path: Path) -> None:
    other = _other_interpreter()
    assert other is not None
    proc = _lab("--smoke", "--python", sys.executable, "--python", other,
                "--only", "ft_single_thread", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((tmp_path / "results.json").read_text())
    (combined,) = [r for r in data["results"] if r["name"] == "ft_single_thread"]
    assert combined["status"] == "ok" and " vs " in combined["interpreter"]
    assert set(combined["summaries"]) == {"gil_build", "free_threaded"}
    assert (tmp_path / "parallelism.png").read_bytes().startswith(PNG)


def _result(name: str, base: list[float], cand: list[float], interpreter: str = "3.13.1") -> ExperimentResult:
    claim = load(name).CLAIM
    return ExperimentResult(claim=claim, interpreter=interpreter, status="ok",
                            verdict=judge(base, cand, threshold=claim.threshold,
                                          direction=claim.direction))


def test_report_from_synthetic_results(tmp_path: Path) -> None:
    skipped = ExperimentResult(claim=load("jit").CLAIM, interpreter="3.13.1", status="skipped",
                               reason="no JIT here")
    results = (_result("listcomp", [1.0, 1.0, 1.0], [2.0, 2.0, 2.0]),          # does not hold
               _result("membership", [100.0, 101.0], [1.0, 1.1]),             # holds
               _result("local_lookup", [1.0, 1.3, 1.1], [1.0, 0.9, 1.05]),    # inconclusive
               skipped)
    report = LabReport(mode="quick", interpreters=(), results=results, elapsed_seconds=1.0)
    text = markdown(report)
    failed = text.split("## Claims that did not hold")[1].split("## Details")[0]
    assert "`listcomp`" in failed and "`membership`" not in failed
    assert "skipped: no JIT here" in text
    assert [r.outcome for r in results] == ["does not hold", "holds", "inconclusive", "skipped"]
    paths = write_charts(report, tmp_path)
    assert [p.name for p in paths] == ["python.png"]  # skipped results have no ratio to draw
    assert all(p.read_bytes().startswith(PNG) for p in paths)


def test_pivot_keeps_one_row_per_interpreter_pair() -> None:
    from weft.lab._interpreters import Interpreter
    from weft.lab._report import pivot

    interps = tuple(Interpreter(path=f"/py{v}", version=v.rstrip("t"), free_threaded=v.endswith("t"),
                                found_by="--python") for v in ("3.11.7", "3.13.0", "3.13.1t"))
    results = (_result("z85", [4.0], [3.0], "3.11.7"), _result("z85", [4.0], [3.0], "3.13.1t"),
               _result("ft_single_thread", [1.0], [1.3], "3.11.7 vs 3.13.1t"),
               _result("ft_single_thread", [1.0], [1.05], "3.13.0 vs 3.13.1t"))
    report = LabReport(mode="quick", interpreters=interps, results=results, elapsed_seconds=1.0)
    labels, rows = pivot(report)
    assert labels == ["3.11.7", "3.13.0", "3.13.1t"]
    assert [(name, sorted(cells)) for name, cells in rows] == [
        ("z85", ["3.11.7", "3.13.1t"]), ("ft_single_thread", ["3.13.1t"]),
        ("ft_single_thread", ["3.13.1t"])]
    text = markdown(report)
    assert "vs 3.11.7: 0.77x does not hold" in text and "vs 3.13.0: 0.95x holds" in text
