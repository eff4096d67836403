"""Targets, Markdown table, PNG and README section for the serve benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PEERS = ("litserve", "mlserver", "fastapi")
LABEL = {"weft": "weft", "weft-3.13t": "weft (3.13t, GIL off)", "litserve": "LitServe",
         "mlserver": "MLServer", "fastapi": "FastAPI (plain)"}
START = "<!-- serve-benchmark:start -->"
END = "<!-- serve-benchmark:end -->"


def _point(rec: dict[str, Any] | None, c: int) -> dict[str, Any] | None:
    if rec is None:
        return None
    return next((p for p in rec["points"] if p["concurrency"] == c), None)


def _accepted(o: dict[str, Any]) -> tuple[float | None, float, bool]:
    """(p50, p99, exact) of the 2xx answers of an overload point: timed from the echoed id; or
    wrk's quantiles when every answer was 2xx; else only an upper bound on the p99."""
    if o.get("ok_p99_ms") is not None:
        return o["ok_p50_ms"], o["ok_p99_ms"], True
    if not o["non_2xx"]:
        return o["p50_ms"], o["p99_ms"], True
    return None, o["p99_ok_upper_ms"], False


def _find(result: dict[str, Any], server: str, kind: str) -> dict[str, Any] | None:
    return next((r for r in result["servers"]
                 if r["server"] == server and r["model"] == kind and r["status"] == "ok"), None)


def evaluate(result: dict[str, Any], c: int = 64) -> list[dict[str, Any]]:
    """The stated targets at concurrency ``c`` and under 2x overload, met or missed, per model."""
    out: list[dict[str, Any]] = []
    kinds = sorted({r["model"] for r in result["servers"]}, key=["numpy", "onnx"].index)
    for kind in kinds:
        weft = _find(result, "weft", kind)
        w = _point(weft, c)
        for peer, need in (("litserve", 1.5), ("mlserver", 1.5), ("fastapi", 3.0)):
            p = _point(_find(result, peer, kind), c)
            name = f"{kind}: weft >= {need:g}x {LABEL[peer]} req/s at c={c}"
            if peer != "fastapi":
                name += ", p99 no higher"
            if w is None or p is None:
                out.append({"model": kind, "target": name, "met": None, "detail": "not measured"})
                continue
            ratio = w["ok_rps"] / p["ok_rps"] if p["ok_rps"] else float("inf")
            met = ratio >= need and (peer == "fastapi" or w["p99_ms"] <= p["p99_ms"])
            out.append({"model": kind, "target": name, "met": met, "ratio": round(ratio, 2),
                        "detail": f"{w['ok_rps']:.0f} vs {p['ok_rps']:.0f} req/s = {ratio:.2f}x; "
                                  f"p99 {w['p99_ms']:.1f} vs {p['p99_ms']:.1f} ms"})
        over = weft["overload"] if weft else None
        name = (f"{kind}: weft at 2x overload: only 503 as errors, accepted (2xx) p99 <= 2x p99 at capacity "
                f"(the closed-loop point with the best 2xx rate)")
        if not over:
            out.append({"model": kind, "target": name, "met": None, "detail": "not measured"})
            continue
        bad = {k: v for k, v in over["non_2xx"].items() if k != "503"}
        bad.update({k: v for k, v in over["socket_errors"].items() if v})
        limit = 2 * over["capacity_p99_ms"]
        _, accepted, timed = _accepted(over)
        met = not bad and accepted <= limit
        share = over["ok_rps"] / over["capacity_rps"] if over.get("capacity_rps") else float("nan")
        out.append({"model": kind, "target": name, "met": met, "accepted_p99_ms": accepted, "limit_ms": limit,
                    "detail": f"offered {over['offered_rps']:.0f}/s: {over['ok_rps']:.0f} 2xx/s "
                              f"({share:.0%} of capacity {over.get('capacity_rps', 0):.0f}/s), "
                              f"503: {over['statuses'].get('503', 0)}, other errors: {bad or 'none'}; "
                              f"accepted p99 {'' if timed else '<= '}{accepted:.1f} ms "
                              f"{'' if timed else '(upper bound) '}vs limit {limit:.1f} ms "
                              f"(2 x p99 {over['capacity_p99_ms']:.1f} ms at c={over['capacity_concurrency']}"
                              + (f"; wrk's p99 there {over['capacity_p99_wrk_ms']:.1f} ms)"
                                 if over.get("capacity_p99_wrk_ms") is not None else ")")})
    return out


def _cell(p: dict[str, Any] | None) -> str:
    if p is None:
        return "-"
    errs = sum(v for k, v in p["non_2xx"].items()) + sum(p["socket_errors"].values())
    s = f"{p['ok_rps']:,.0f} ({p['p50_ms']:.1f} / {p['p99_ms']:.1f})"
    return s + (f" ⚠ {errs} err" if errs else "")


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    cs = cfg["concurrency"]
    lines = [
        f"{cfg['model']}, dynamic batching max {cfg['max_batch_size']} requests / {cfg['max_delay_ms']:g} ms "
        f"where the server batches; {cfg['request']}. Load: {cfg['load_generator']} from its own process, "
        f"{cfg['duration_s']:g} s per point after a {cfg['warmup_s']:g} s warm-up, "
        f"{result['machine']['cpus']} CPUs shared by server and load generator, one BLAS/ONNX thread per call "
        f"in every server. {'Quick run. ' if result['quick'] else ''}({result['created']})",
        "",
        "Cells: 2xx req/s (p50 / p99 ms) at each number of concurrent connections, latencies as wrk reports "
        "them for every server (wrk adds synthetic samples for coordinated omission, so its tails run higher "
        "than the raw timings). 2x overload offers twice the best closed-loop 2xx rate on a fixed schedule "
        f"(open loop, up to {cfg['overload']['connections']} connections); its accepted p50 / p99 are those of "
        "the 2xx answers themselves for weft and MLServer (V2): every request carries its send time as its "
        "`id`, which the server echoes, and each 2xx answer is timed from it. LitServe and FastAPI echo "
        "nothing: theirs are wrk's quantiles, of all answers (all 2xx there). The overload target compares "
        "raw timings on both sides: \"at capacity\" is the closed-loop point with the best 2xx rate, run once "
        "more with timed requests for its p99 (the closed-loop cells use the same static body for every "
        "server).",
        "",
        "| server | model | " + " | ".join(f"c={c}" for c in cs) + " | 2x overload: offered -> 2xx/s, 503/s, "
        "other errors, accepted p50 / p99 ms |",
        "|---|---|" + "---:|" * len(cs) + "---|",
    ]
    for r in result["servers"]:
        cells = [_cell(_point(r, c)) for c in cs]
        o = r.get("overload")
        if r["status"] != "ok":
            over = f"failed: {r['status'][8:][:80]}"
        elif o:
            secs = o["duration_s"] or 1
            other = {k: v for k, v in o["non_2xx"].items() if k != "503"}
            other.update({k: v for k, v in o["socket_errors"].items() if v})
            other_s = ", ".join(f"{k}: {v}" for k, v in other.items()) or "none"
            p50, p99, exact = _accepted(o)
            accepted = f"{p50:.0f} / {p99:.0f}" if exact else f"p99 <= {p99:.0f}"
            over = (f"{o['offered_rps']:,.0f} -> {o['ok_rps']:,.0f}, {o['statuses'].get('503', 0) / secs:,.0f}, "
                    f"{other_s}, {accepted}")
        else:
            over = "-"
        lines.append(f"| {LABEL.get(r['server'], r['server'])} {r['version'].split()[0]} | {r['model']} | "
                     + " | ".join(cells) + f" | {over} |")
    lines += ["", "| target | met | measured |", "|---|---|---|"]
    for t in result["targets"]:
        mark = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {mark} | {t['detail']} |")
    costs = []
    for r in result["servers"]:
        timed = r.get("capacity_timed")
        static = _point(r, timed["concurrency"]) if timed else None
        if timed and static:
            costs.append(f"{LABEL.get(r['server'], r['server'])} {r['model']} c={timed['concurrency']} "
                         f"{timed['ok_rps']:,.0f} vs {static['ok_rps']:,.0f}")
    if costs:
        lines += ["", "Capacity points re-run with timed requests (2xx req/s timed vs static body; the timed "
                      "run gives the capacity p99 of the overload target): " + "; ".join(costs) + "."]
    if result.get("not_installed"):
        lines += ["", "Not installed: " + "; ".join(f"{k}: {v}" for k, v in result["not_installed"].items())]
    lines += ["", "Server settings: " + "; ".join(
        f"{LABEL.get(r['server'], r['server'])} {r['version']}: {r['settings']}"
        for r in result["servers"] if r["model"] == "numpy") + "."]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in ("numpy", "onnx") if any(r["model"] == k for r in result["servers"])]
    fig, axes = plt.subplots(len(kinds), 2, figsize=(11, 4.2 * len(kinds)), squeeze=False)
    for row, kind in zip(axes, kinds, strict=True):
        for r in result["servers"]:
            if r["model"] != kind or not r["points"]:
                continue
            cs = [p["concurrency"] for p in r["points"]]
            label = LABEL.get(r["server"], r["server"])
            row[0].plot(cs, [p["ok_rps"] for p in r["points"]], marker="o", label=label)
            row[1].plot(cs, [p["p99_ms"] for p in r["points"]], marker="o", label=label)
        row[0].set_title(f"{kind} MLP: throughput")
        row[0].set_ylabel("2xx requests / s")
        row[1].set_title(f"{kind} MLP: p99 latency")
        row[1].set_ylabel("ms")
        row[1].set_yscale("log")
        for ax in row:
            ax.set_xscale("log", base=2)
            ax.set_xlabel("concurrent connections")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(f"weft serve vs peers ({result['machine']['cpus']} CPUs, {result['created'][:10]})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def readme_section(md: str) -> str:
    return (f"### Serve\n\n{START}\n`benchmarks/serve/run.py` (results in `benchmarks/results/serve.*`): "
            f"{md.strip()}\n{END}\n")


def update_readme(readme: Path, md: str) -> None:
    """Replace (or add) the ``### Serve`` subsection under ``## Benchmarks``, nothing else."""
    text = readme.read_text()
    section = readme_section(md)
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        # Drop the "### Serve" heading and the text up to the marker; re-add from section.
        head = head[: head.rfind("### Serve")] if "### Serve" in head else head
        text = head + section + tail.lstrip("\n")
        if not text.endswith("\n"):
            text += "\n"
        readme.write_text(text)
        return
    lines = text.splitlines(keepends=True)
    try:
        start = next(i for i, ln in enumerate(lines) if ln.rstrip() == "## Benchmarks")
    except StopIteration:
        readme.write_text(text.rstrip("\n") + "\n\n## Benchmarks\n\n" + section)
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    block = "".join(lines[:end]).rstrip("\n") + "\n\n" + section
    rest = "".join(lines[end:])
    readme.write_text(block + ("\n" + rest if rest else ""))
