"""Turn the Load benchmark's rows into ratios, targets, a Markdown report and a chart.

A *case* is one workload at one length on one interpreter. The limit of a case is
``cores x serial items/s``; a contender's parallel efficiency is its items/s over that
limit. DataLoader is the best of its prefetch settings in the case.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MB = 2**20
PEERS = ("torch", "torchdata", "spdl", "grain")
#: The columns of the zoo table, in order (a DataLoader column is the best of its settings).
COLUMNS = ("serial loop", "thread pool", "weft", "weft thread", "weft process", "weft x32", "DataLoader",
           "torchdata.nodes", "SPDL (MT)", "SPDL (MP)", "Grain")


def _rate(row: dict[str, Any] | None) -> float:
    return float(row.get("items_per_s") or 0.0) if row else 0.0


def _case(row: dict[str, Any]) -> tuple[str, str, str]:
    return row["workload"], row.get("length", "short"), row["interpreter"]


def _column(row: dict[str, Any]) -> str:
    """The zoo column a row belongs to (DataLoader's settings share one; 16 workers stays apart)."""
    label = row["label"]
    if row["contender"] == "torch" and label.startswith("DataLoader (prefetch"):
        return "DataLoader"
    return label


def _best_by_column(rows: list[dict[str, Any]], case: tuple[str, str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if _case(r) == case and r.get("ok"):
            col = _column(r)
            if col not in out or _rate(r) > _rate(out[col]):
                out[col] = r
    return out


def cases(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    seen: list[tuple[str, str, str]] = []
    for r in rows:
        if _case(r) not in seen:
            seen.append(_case(r))
    return seen


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Add derived ratios to every row (in place), evaluate issue targets, worst/best per contender."""
    dl_gil: dict[tuple[str, str], dict[str, Any]] = {}
    for case in cases(rows):
        if case[2] == "gil":
            dl = _best_by_column(rows, case).get("DataLoader")
            if dl:
                dl_gil[case[:2]] = dl
    for r in rows:
        by = _best_by_column(rows, _case(r))
        serial = by.get("serial loop")
        dl = dl_gil.get(_case(r)[:2])
        rate = _rate(r)
        r["limit_items_per_s"] = r["cores"] * _rate(serial) if serial else None
        r["vs_serial"] = rate / _rate(serial) if serial and _rate(serial) else None
        r["parallel_efficiency"] = rate / r["limit_items_per_s"] if r["limit_items_per_s"] else None
        r["vs_dataloader"] = rate / _rate(dl) if dl and _rate(dl) else None
        if r.get("ok") and r.get("window_items"):
            r["cpu_s_per_1k_items"] = 1000 * float(r.get("window_cpu_s", 0.0)) / r["window_items"]
        backends = (r.get("info") or {}).get("backends") or []
        r["weft_backend"] = ", ".join(f"{b['backend']} x{b['workers']}" for b in backends) or None

    targets: list[dict[str, Any]] = []
    for case in cases(rows):
        workload, length, interp = case
        by = _best_by_column(rows, case)
        weft = by.get("weft")
        if weft is None:
            continue
        name = f"{workload}/{length} [{weft['python']}]"
        dl = dl_gil.get((workload, length))
        limit = weft.get("limit_items_per_s")
        weft_workers = (weft.get("options") or {}).get("workers", 0)
        io = weft_workers == "auto" or weft_workers > weft["cores"]
        if dl and limit:
            goal = max(1.2 * _rate(dl), 0.9 * limit) if not io else 1.2 * _rate(dl)
            targets.append({"case": name, "target": "items/s >= max(1.2x DataLoader, 0.9x cores x serial)"
                            if not io else "items/s >= 1.2x DataLoader", "value": _rate(weft), "goal": goal,
                            "met": _rate(weft) >= goal,
                            "note": f"DataLoader {_rate(dl):,.0f}/s, limit {limit:,.0f}/s"})
        if dl and weft.get("time_to_first_batch_s") is not None:
            ttfb, dl_ttfb = weft["time_to_first_batch_s"], dl["time_to_first_batch_s"]
            targets.append({"case": name, "target": "first batch no later than DataLoader's",
                            "value": ttfb * 1e3, "goal": dl_ttfb * 1e3, "met": ttfb <= dl_ttfb,
                            "note": "milliseconds"})
        own = [by[c] for c in ("weft thread", "weft process") if c in by]
        if own:
            best_own = max(own, key=_rate)
            targets.append({"case": name, "target": "auto within 5% of weft's best backend",
                            "value": _rate(weft), "goal": 0.95 * _rate(best_own), "met": _rate(weft) >= 0.95 * _rate(best_own),
                            "note": f"auto chose {weft.get('weft_backend')}; best: {best_own['label']} "
                                    f"{_rate(best_own):,.0f}/s"})
        if workload == "io50":
            fixed = [r for c, r in by.items() if c not in ("weft", "serial loop") and
                     (r.get("options") or {}).get("workers", (r.get("options") or {}).get("threads")) == 32]
            for r in fixed:
                targets.append({"case": name, "target": f"io: >= 1.5x {r['label']} (32 threads)",
                                "value": _rate(weft), "goal": 1.5 * _rate(r), "met": _rate(weft) >= 1.5 * _rate(r),
                                "note": f"weft: workers={weft_workers!r}, ran {weft.get('weft_backend')}"})
        pool = by.get("thread pool")
        if interp == "ft" and pool and (pool.get("parallel_efficiency") or 0) >= 0.85:
            targets.append({"case": name, "target": "3.13t parallel efficiency >= 0.85 (the thread pool reaches it)",
                            "value": weft["parallel_efficiency"], "goal": 0.85,
                            "met": (weft["parallel_efficiency"] or 0) >= 0.85, "note": ""})

    # each contender's worst and best across the zoo
    spread: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        if not r.get("ok") or r["contender"] == "serial":
            continue
        key = (_column(r), r["python"])
        best_in_case = _best_by_column(rows, _case(r)).get(_column(r))
        if best_in_case is not r:
            continue  # DataLoader: only its best setting in the case
        entry = spread.setdefault(key, {"contender": key[0], "python": key[1], "efficiency": [], "vs_dataloader": []})
        where = f"{r['workload']}/{r.get('length', 'short')}"
        if r.get("parallel_efficiency") is not None:
            entry["efficiency"].append((r["parallel_efficiency"], where))
        if r.get("vs_dataloader") is not None:
            entry["vs_dataloader"].append((r["vs_dataloader"], where))
    worst_best = []
    for entry in spread.values():
        out = {"contender": entry["contender"], "python": entry["python"]}
        for metric in ("efficiency", "vs_dataloader"):
            values = entry[metric]
            out[f"worst_{metric}"] = min(values) if values else None
            out[f"best_{metric}"] = max(values) if values else None
        worst_best.append(out)
    return {"targets": targets, "worst_best": worst_best}


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def zoo_table(rows: list[dict[str, Any]]) -> str:
    """One line per case: items/s of every contender (weft's backend under its figure)."""
    present = [c for c in COLUMNS if any(_column(r) == c for r in rows)]
    out = ["| workload | length | python | " + " | ".join(present) + " | weft / limit | weft / DataLoader "
           "| first batch weft / DataLoader |",
           "|---|---|---|" + "---:|" * (len(present) + 3)]
    for case in cases(rows):
        by = _best_by_column(rows, case)
        if not by:
            continue
        python = next(iter(by.values()))["python"]
        cells = []
        for c in present:
            r = by.get(c)
            if r is None:
                cells.append("-")
                continue
            text = f"{_rate(r):,.0f}"
            if c == "weft" and r.get("weft_backend"):
                text += f"<br>{r['weft_backend']}"
            cells.append(text)
        weft = by.get("weft")
        dl = _best_by_column(rows, (case[0], case[1], "gil")).get("DataLoader")
        ttfb = "-"
        if weft and dl:
            ttfb = f"{weft['time_to_first_batch_s'] * 1e3:,.0f} / {dl['time_to_first_batch_s'] * 1e3:,.0f} ms"
        out.append(f"| {case[0]} | {case[1]} | {python} | " + " | ".join(cells)
                   + f" | {_fmt(weft and weft.get('parallel_efficiency'), '.2f')}"
                   + f" | {_fmt(weft and weft.get('vs_dataloader'), '.2f', 'x')} | {ttfb} |")
    return "\n".join(out) + "\n"


def worst_best_table(summary: dict[str, Any]) -> str:
    out = ["| contender | python | worst items/s / limit | best items/s / limit | worst vs DataLoader "
           "| best vs DataLoader |", "|---|---|---|---|---|---|"]

    def cell(pair: tuple[float, str] | None) -> str:
        return "-" if pair is None else f"{pair[0]:.2f} ({pair[1]})"

    order = {c: i for i, c in enumerate(COLUMNS)}
    for e in sorted(summary["worst_best"], key=lambda e: (e["python"], order.get(e["contender"], 99))):
        out.append(f"| {e['contender']} | {e['python']} | {cell(e['worst_efficiency'])} | "
                   f"{cell(e['best_efficiency'])} | {cell(e['worst_vs_dataloader'])} | "
                   f"{cell(e['best_vs_dataloader'])} |")
    return "\n".join(out) + "\n"


def detail_table(rows: list[dict[str, Any]], case: tuple[str, str, str]) -> str:
    head = ("| contender | items/s | first batch | parallel eff. | vs DataLoader | CPU s / 1k items "
            "| peak RSS (tree) | peak PSS (tree) | processes |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    lines = []
    for r in rows:
        if _case(r) != case:
            continue
        label = r["label"]
        if r["contender"] == "weft" and r.get("weft_backend"):
            label += f" ({r['weft_backend']})"
        if not r.get("ok"):
            lines.append(f"| {label} | failed: {str(r.get('error', ''))[-80:].replace('|', '/')} | | | | | | | |")
            continue
        lines.append(
            f"| {label} | {_rate(r):,.0f} | {r['time_to_first_batch_s'] * 1e3:,.0f} ms "
            f"| {_fmt(r['parallel_efficiency'], '.2f')} | {_fmt(r['vs_dataloader'], '.2f', 'x')} "
            f"| {_fmt(r.get('cpu_s_per_1k_items'), '.2f')} | {r['peak_rss_bytes'] / MB:,.0f} MB "
            f"| {r['peak_pss_bytes'] / MB:,.0f} MB | {r['max_processes']} |")
    return head + "\n".join(lines) + "\n"


def markdown(rows: list[dict[str, Any]], summary: dict[str, Any], meta: dict[str, Any]) -> str:
    out = [f"Load benchmark, workload zoo ({meta['mode']} mode, {meta['date']}, {meta['usable_cores']} usable "
           f"cores, best of {meta['repeat']} per configuration, contenders interleaved). Every configuration "
           "runs one cold epoch in a fresh process, timed from building the pipeline to its last batch "
           "(start-up included). limit = cores x serial items/s; parallel efficiency = items/s / limit; "
           "CPU = user+system seconds of the whole process tree; peak RSS = largest sum over the tree's "
           "processes, sampled every 20 ms (PSS, every 200 ms, splits pages that forked workers share). "
           "DataLoader = the best of its prefetch settings. Items per epoch: "
           + ", ".join(f"{n} {v['short']:,}/{v['long']:,}" for n, v in meta.get("items", {}).items())
           + " (short/long).\n"]
    out.append("#### The zoo (items/s)\n")
    out.append(zoo_table(rows))
    out.append("3.13t rows compare with the 3.11 DataLoader: torch does not install on 3.13t here.\n")
    out.append("#### Each contender's worst and best case\n")
    out.append(worst_best_table(summary))
    out.append("#### Targets\n")
    missed = [t for t in summary["targets"] if not t["met"]]
    out.append(f"{len(summary['targets']) - len(missed)} of {len(summary['targets'])} met.\n")
    for t in summary["targets"]:
        mark = "met" if t["met"] else "MISSED"
        out.append(f"- {t['case']}: {t['target']}: {t['value']:,.2f} (goal {t['goal']:,.2f}): **{mark}**"
                   + (f" ({t['note']})" if t["note"] else ""))
    for case in cases(rows):
        workload, length, _interp = case
        python = next((r["python"] for r in rows if _case(r) == case), "")
        out.append(f"\n#### {workload}/{length} on {python}: {meta['workloads'].get(workload, '')}\n")
        out.append(detail_table(rows, case))
    if meta.get("skipped"):
        out.append("\n#### Not run\n")
        seen = set()
        for s in meta["skipped"]:
            key = (s["python"], s["contender"], s["reason"])
            if key not in seen:
                seen.add(key)
                out.append(f"- {s['contender']} on {s['python']}: {s['reason']}")
    configs = sorted({(r["label"], (r.get("info") or {}).get("config", "")) for r in rows
                      if r.get("ok") and r["contender"] != "serial"})
    out.append("\n#### Configurations\n")
    for label, config in configs:
        if config:
            out.append(f"- {label}: `{config}`")
    reasons = sorted({(r["workload"], r.get("length", ""), r["python"], b["backend"], b["reason"]) for r in rows
                      if r["contender"] == "weft" and r.get("ok") for b in (r.get("info") or {}).get("backends", [])})
    if reasons:
        out.append("\n#### Backends weft chose (from `pipe.statistics()`)\n")
        for wl, length, py, backend, reason in reasons:
            out.append(f"- {wl}/{length} on {py}: {backend}: {reason}")
    return "\n".join(out) + "\n"


def chart(rows: list[dict[str, Any]], path: Path) -> None:
    """Parallel efficiency (items/s over cores x serial) of every contender in every case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    interps = [i for i in ("gil", "ft") if any(r["interpreter"] == i for r in rows)]
    if not interps:
        return
    fig, axes = plt.subplots(1, len(interps), figsize=(9 * len(interps), 11), squeeze=False)
    palette = {"weft": "#d62728", "weft thread": "#ff9896", "weft process": "#e377c2", "weft x32": "#c49c94", "thread pool": "#7f7f7f",
               "DataLoader": "#1f77b4", "torchdata.nodes": "#17becf", "SPDL (MT)": "#2ca02c",
               "SPDL (MP)": "#98df8a", "Grain": "#ff7f0e"}
    for col, interp in enumerate(interps):
        ax = axes[0][col]
        these = [c for c in cases(rows) if c[2] == interp]
        contenders = [c for c in COLUMNS if c != "serial loop" and c in palette]
        height = 0.8 / len(contenders)
        python = next((r["python"] for r in rows if r["interpreter"] == interp), interp)
        for k, contender in enumerate(contenders):
            ys, xs = [], []
            for y, case in enumerate(these):
                r = _best_by_column(rows, case).get(contender)
                if r and r.get("parallel_efficiency") is not None:
                    ys.append(y + k * height)
                    xs.append(min(r["parallel_efficiency"], 1.5))
            if xs:
                ax.barh(ys, xs, height=height, color=palette[contender], label=contender)
        ax.set_yticks([y + 0.4 for y in range(len(these))], [f"{c[0]}/{c[1]}" for c in these])
        ax.invert_yaxis()
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.axvline(0.9, color="black", linewidth=0.6, linestyle="--")
        ax.set_xlabel("items/s / (cores x serial items/s)  (capped at 1.5; io cases exceed 1 by design)")
        ax.set_title(f"{python}: parallel efficiency, one cold epoch (higher is better)")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
