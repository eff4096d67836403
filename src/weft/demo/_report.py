"""The demo's printed report: one rich table per phase, from the figures ``run_demo`` collects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["print_data", "print_serve", "print_train"]


def _print_table(console: Any, title: str, rows: list[tuple[str, str]]) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("figure")
    for what, figure in rows:
        table.add_row(what, figure)
    console.print(table)


def print_data(console: Any, counts: dict[str, int], summary: dict[str, Any], stats: Any) -> None:
    """Phase 1: the dataset and, per pipeline stage, its throughput, backend and why."""
    rows = [("dataset", f"{counts['train']} train + {counts['val']} validation PNGs, 3 classes "
                        f"({summary['dataset_seconds']:.1f} s to draw or find)")]
    if stats is None:
        rows.append(("pipeline", "not run (nothing left to train)"))
    else:
        for stage in stats.stages:
            how = stage.backend + (f" x{stage.workers}" if stage.workers > 1 else "")
            rows.append((f"stage {stage.index} {stage.name}",
                         f"{stage.items} items, {stage.items_per_second:,.0f}/s, {how}: {stage.reason}"))
        rows.append(("verdict", stats.verdict))
    _print_table(console, "1. data: weft.data pipeline (statistics of the last epoch)", rows)


def print_train(console: Any, summary: dict[str, Any], root: Path) -> None:
    """Phase 2: throughput, step timings, checkpoints and the tracker run."""
    steps, ck = summary["step_stats"], summary["ckpt_stats"]
    rows = []
    if summary["train_images"]:
        rows.append(("throughput", f"{summary['train_images'] / summary['train_seconds']:,.0f} images/s over "
                                   f"{summary['train_seconds']:.1f} s (data + steps + logging)"))
        rows.append(("train step (timed)", f"{steps.count} steps, mean {steps.mean * 1e3:.2f} ms, "
                                           f"p95 {steps.p95 * 1e3:.2f} ms, max {steps.max * 1e3:.2f} ms"))
    if summary["resumed_from_epoch"] is not None:
        rows.append(("resumed", f"from the checkpoint of epoch {summary['resumed_from_epoch']}"))
    rows += [
        ("checkpoints", f"{ck.saves} saved in the background on a weft thread (step blocked "
                        f"{ck.blocked_seconds * 1e3:.1f} ms in total for the copies, writes took "
                        f"{ck.save_seconds * 1e3:.1f} ms), safetensors in {root / 'checkpoints'}"),
        ("tracker", f"run {summary['run_id']} in {root / 'weft.db'}: "
                    f"weft runs show {summary['run_id']} --db {root / 'weft.db'}"),
        ("validation accuracy", f"{summary['val_acc']:.1%}"),
    ]
    _print_table(console, "2. train: NumPy MLP with weft.train", rows)


def print_serve(console: Any, served: dict[str, Any]) -> None:
    """Phase 3: the server, its backend and why, request throughput and batching."""
    _print_table(console, "3. serve: weft.serve V2 server, weft.serve.Client", [
        ("server", f"{served['url']}, model 'shapes', backend {served['serve_backend']}: {served['serve_reason']}"),
        ("throughput", f"{served['requests']} single-image requests from {served['client_threads']} client "
                       f"threads in {served['serve_seconds']:.2f} s = {served['requests_per_s']:,.0f} requests/s"),
        ("dynamic batching", f"{served['batches']} batches, {served['mean_batch_rows']:.1f} images per batch "
                             f"on average, {served['failed']} failed"),
        ("served accuracy", f"{served['served_acc']:.1%}"),
    ])
