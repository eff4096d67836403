"""Turn the Load benchmark's rows into ratios, a Markdown report and a chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MB = 2**20
PEERS = ("torch", "torchdata", "spdl", "grain")


def _rate(row: dict[str, Any]) -> float:
    return float(row.get("items_per_s") or 0.0)


def _find(rows: list[dict[str, Any]], workload: str, interp: str, label: str) -> dict[str, Any] | None:
    for r in rows:
        if r["workload"] == workload and r["interpreter"] == interp and r["label"] == label and r.get("ok"):
            return r
    return None


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Add derived ratios to every row (in place) and evaluate the targets."""
    for r in rows:
        serial = _find(rows, r["workload"], r["interpreter"], "serial loop")
        dl = _find(rows, r["workload"], "gil", "DataLoader")
        rate = _rate(r)
        r["vs_serial"] = rate / _rate(serial) if serial and _rate(serial) else None
        r["parallel_efficiency"] = (rate / (r["cores"] * _rate(serial))) if serial and _rate(serial) else None
        r["vs_dataloader"] = rate / _rate(dl) if dl and _rate(dl) else None
        if r.get("ok") and r.get("window_items"):
            r["cpu_s_per_1k_items"] = 1000 * float(r.get("window_cpu_s", 0.0)) / r["window_items"]
        backends = (r.get("info") or {}).get("backends") or []
        r["weft_backend"] = ", ".join(f"{b['backend']} x{b['workers']}" for b in backends) or None

    targets: list[dict[str, Any]] = []

    def target(name: str, value: float | None, goal: float, *, higher: bool = True, note: str = "") -> None:
        met = None if value is None else (value >= goal if higher else value <= goal)
        targets.append({"target": name, "value": value, "goal": goal, "higher_is_better": higher,
                        "met": met, "note": note})

    workloads = sorted({r["workload"] for r in rows}, key=["images", "text", "io"].index)
    for wl in workloads:
        weft = _find(rows, wl, "gil", "weft")
        peers = [r for r in rows if r["workload"] == wl and r["interpreter"] == "gil"
                 and r["contender"] in PEERS and r.get("ok")]
        if weft and peers:
            best = max(peers, key=_rate)
            target(f"{wl}: weft vs best peer (GIL)", _rate(weft) / _rate(best), 1.0,
                   note=f"best peer: {best['label']} {_rate(best):.0f} items/s")
        if weft and weft.get("vs_dataloader") is not None:
            goal = 5.0 if wl == "io" else 1.2
            target(f"{wl}: weft vs DataLoader (GIL)", weft["vs_dataloader"], goal)
    ft_text = _find(rows, "text", "ft", "weft")
    if ft_text:
        target("text: weft parallel efficiency on 3.13t", ft_text["parallel_efficiency"], 0.85)
    weft_img, dl_img = _find(rows, "images", "gil", "weft"), _find(rows, "images", "gil", "DataLoader")
    if weft_img and dl_img:
        target("images: weft peak RSS / DataLoader's (GIL)", weft_img["peak_rss_bytes"] / dl_img["peak_rss_bytes"],
               0.6, higher=False,
               note=f"PSS ratio {weft_img['peak_pss_bytes'] / max(1, dl_img['peak_pss_bytes']):.2f}")
    return {"targets": targets}


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def table(rows: list[dict[str, Any]], workload: str) -> str:
    head = ("| python | contender | items/s | vs serial | parallel eff. | vs DataLoader | CPU s / 1k items "
            "| peak RSS (tree) | peak PSS (tree) | processes |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    lines = []
    for r in rows:
        if r["workload"] != workload:
            continue
        label = r["label"]
        if r["contender"] == "weft" and r.get("weft_backend"):
            label += f" ({r['weft_backend']})"
        if not r.get("ok"):
            lines.append(f"| {r['python']} | {label} | failed | | | | | | | |")
            continue
        lines.append(
            f"| {r['python']} | {label} | {_rate(r):,.0f} | {_fmt(r['vs_serial'], '.2f', 'x')} "
            f"| {_fmt(r['parallel_efficiency'], '.2f')} | {_fmt(r['vs_dataloader'], '.2f', 'x')} "
            f"| {_fmt(r.get('cpu_s_per_1k_items'), '.2f')} | {r['peak_rss_bytes'] / MB:,.0f} MB "
            f"| {r['peak_pss_bytes'] / MB:,.0f} MB | {r['max_processes']} |")
    return head + "\n".join(lines) + "\n"


def markdown(rows: list[dict[str, Any]], summary: dict[str, Any], meta: dict[str, Any]) -> str:
    out = [f"Load benchmark ({meta['mode']} mode, {meta['date']}, {meta['usable_cores']} usable cores; "
           f"best of {meta['repeat']} per configuration). Items/s over the measured epochs, after a warm-up "
           "epoch; parallel efficiency = items/s / (cores x serial items/s); CPU = user+system seconds of the "
           "whole process tree; peak RSS = largest sum over the tree's processes, sampled every 20 ms "
           "(PSS, every 200 ms, splits pages that forked workers share).\n"]
    out.append("#### Summary (items/s, peak RSS of the process tree, weft's backend)\n")
    out.append(compact(rows, summary))
    out.append("3.13t rows compare with the 3.11 DataLoader: torch does not install on 3.13t here.\n")
    for wl, description in meta["workloads"].items():
        out.append(f"#### {wl}: {description}\n")
        out.append(table(rows, wl))
    out.append("#### Targets\n")
    for t in summary["targets"]:
        mark = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
        sign = ">=" if t["higher_is_better"] else "<="
        note = f" ({t['note']})" if t["note"] else ""
        out.append(f"- {t['target']}: {_fmt(t['value'], '.2f')} (goal {sign} {t['goal']}): **{mark}**{note}")
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
    reasons = sorted({(r["workload"], r["python"], b["backend"], b["reason"]) for r in rows
                      if r["contender"] == "weft" and r.get("ok") for b in (r.get("info") or {}).get("backends", [])})
    if reasons:
        out.append("\n#### Backends weft chose (from `pipe.statistics()`)\n")
        for wl, py, backend, reason in reasons:
            out.append(f"- {wl} on {py}: {backend}: {reason}")
    return "\n".join(out) + "\n"


def chart(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = [w for w in ("images", "text", "io") if any(r["workload"] == w for r in rows)]
    if not workloads:
        return
    fig, axes = plt.subplots(2, len(workloads), figsize=(5.2 * len(workloads), 8), squeeze=False)
    for col, wl in enumerate(workloads):
        subset = [r for r in rows if r["workload"] == wl and r.get("ok")]
        labels = [f"{r['label']} [{r['python']}]" for r in subset]
        colours = ["#d62728" if r["contender"] == "weft" else "#7f7f7f" if r["contender"] == "serial"
                   else "#1f77b4" for r in subset]
        ax = axes[0][col]
        ax.barh(labels, [_rate(r) for r in subset], color=colours)
        ax.invert_yaxis()
        ax.set_title(f"{wl}: items/s (higher is better)")
        ax.tick_params(axis="y", labelsize=8)
        ax = axes[1][col]
        ax.barh(labels, [r["peak_rss_bytes"] / MB for r in subset], color=colours, label="RSS")
        ax.barh(labels, [r["peak_pss_bytes"] / MB for r in subset], color="none", edgecolor="black",
                hatch="//", label="PSS")
        ax.invert_yaxis()
        ax.set_title(f"{wl}: peak memory of the process tree, MB")
        ax.tick_params(axis="y", labelsize=8)
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def compact(rows: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    """The short table for README.md: items/s (and peak RSS) per contender, one row per workload/python."""
    columns = ["serial loop", "thread pool", "weft", "DataLoader", "torchdata.nodes", "SPDL (MT)", "SPDL (MP)", "Grain"]
    out = ["| workload | python | " + " | ".join(columns) + " | weft vs best peer | weft vs DataLoader |",
           "|---|---|" + "---:|" * (len(columns) + 2)]
    for wl in ("images", "text", "io"):
        for interp in ("gil", "ft"):
            subset = {r["label"]: r for r in rows if r["workload"] == wl and r["interpreter"] == interp and r.get("ok")}
            if not subset:
                continue
            python = next(iter(subset.values()))["python"]
            cells = []
            for c in columns:
                r = subset.get(c)
                if r is None:
                    cells.append("-")
                    continue
                text = f"{_rate(r):,.0f}/s<br>{r['peak_rss_bytes'] / MB:,.0f} MB"
                if c == "weft" and r.get("weft_backend"):
                    text += f"<br>{r['weft_backend']}"
                cells.append(text)
            weft = subset.get("weft")
            peers = [r for r in subset.values() if r["contender"] in PEERS]
            best = max(peers, key=_rate) if peers else None
            vs_best = f"{_rate(weft) / _rate(best):.2f}x" if weft and best else "-"
            vs_dl = _fmt(weft.get("vs_dataloader") if weft else None, ".2f", "x")
            out.append(f"| {wl} | {python} | " + " | ".join(cells) + f" | {vs_best} | {vs_dl} |")
    return "\n".join(out) + "\n"
