"""Single-thread cost of the free-threaded build, from the serial runs of threads_gil
(on a GIL interpreter) and threads_free (on a free-threaded one): same workload and size."""

from __future__ import annotations

from typing import Any

from weft.lab._claim import Claim

CLAIM = Claim(
    name="ft_single_thread", group="parallelism",
    text="The free-threaded build runs single-threaded pure Python within 10% of the GIL build.",
    source="the 3.14 free-threading HOWTO ('about 5-10%'); 3.13 said about 40% on pyperformance",
    baseline="gil_build", candidate="free_threaded", threshold=round(1 / 1.1, 3))

#: Measured experiments whose runs this one is derived from.
REQUIRES = ("threads_gil", "threads_free")


def combine(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One result per (GIL interpreter, free-threaded interpreter) pair with both serial runs."""
    gil = [r for r in runs if r["name"] == "threads_gil" and r["status"] == "ok"]
    free = [r for r in runs if r["name"] == "threads_free" and r["status"] == "ok"]
    if not gil or not free:
        found = sorted({r["interpreter"]["label"] for r in runs})
        return [{
            "status": "skipped",
            "reason": "needs a successful threads_gil run on a GIL interpreter and threads_free "
                      f"on a free-threaded one; interpreters run: {', '.join(found) or 'none'}",
            "samples": {}, "units": {}, "notes": [], "params": {}, "interpreters": found,
        }]
    out = []
    for g in gil:
        for f in free:
            gv, fv = g["interpreter"]["version"], f["interpreter"]["version"]
            notes = []
            if gv.split(".")[:2] != fv.split(".")[:2]:
                notes.append(f"compares {gv} with {fv}t: the version difference is part of the "
                             "ratio; pass a GIL build of the same version with --python for a "
                             "like-for-like figure")
            builds = {label: (r["interpreter"].get("pgo"), r["interpreter"].get("lto"))
                      for label, r in ((g["interpreter"]["label"], g), (f["interpreter"]["label"], f))}
            if len(set(builds.values())) > 1:
                notes.append("the two builds differ in PGO/LTO optimisation "
                             + ", ".join(f"{k}: pgo={v[0]}, lto={v[1]}" for k, v in builds.items())
                             + "; that difference is part of the ratio")
            out.append({
                "status": "ok", "reason": "",
                "samples": {"gil_build": g["samples"]["serial"],
                            "free_threaded": f["samples"]["serial"]},
                "units": {"gil_build": "s", "free_threaded": "s"},
                "notes": notes, "params": dict(g["params"]),
                "interpreters": [g["interpreter"]["label"], f["interpreter"]["label"]],
            })
    return out
