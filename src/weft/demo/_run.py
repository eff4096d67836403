"""The demo's three phases in order (data, train, serve) and the figures they produce."""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from weft.demo._dataset import load_example, load_plain, make_dataset
from weft.demo._model import DemoModel, forward, init_params, learning_rate, sgd_step

__all__ = ["DEFAULT_WORKDIR", "SIZES", "DemoSize", "evaluate", "run_demo", "serve_and_query"]

DEFAULT_WORKDIR = "runs/demo"


@dataclass(frozen=True, kw_only=True)
class DemoSize:
    """How much the demo does: images per class, epochs, batch, hidden units, requests,
    and how many steps apart the mid-epoch checkpoints are."""

    train_per_class: int
    val_per_class: int
    epochs: int
    batch_size: int = 64
    hidden: int = 128
    requests: int = 600
    checkpoint_every: int = 25


# "small" has 8 batches an epoch, "default" 71: both checkpoint a few times an epoch, so an
# interrupted run loses at most a few steps.
SIZES = {"small": DemoSize(train_per_class=160, val_per_class=40, epochs=5, requests=120, checkpoint_every=4),
         "default": DemoSize(train_per_class=1500, val_per_class=300, epochs=8, requests=900)}

# The pipeline: a shuffle buffer larger than a small epoch (so "small" shuffles fully),
# two decode workers (each PNG decode releases the GIL) and four batches prefetched, so
# the training step never waits on the data on a 2-core machine.
_SHUFFLE_BUFFER = 2048
_DECODE_WORKERS = 2
_PREFETCH = 4
_VALIDATION_BATCH = 256

# The serving phase: 8 client threads with up to 16 requests in flight, so the server's
# batcher sees concurrent requests and can form batches of up to 32 within 2 ms.
_CLIENT_THREADS = 8
_IN_FLIGHT = 16
_SERVE_MAX_BATCH = 32
_SERVE_MAX_DELAY = 0.002  # seconds a request waits for its batch to fill
_SERVE_WORKERS = 2


def run_demo(*, size: str = "default", epochs: int | None = None, workdir: str | Path = DEFAULT_WORKDIR,
             fresh: bool = False, console: Any = None,
             on_step: Callable[[int, np.ndarray, np.ndarray], bool] | None = None) -> dict[str, Any]:
    """Run the three phases and print a summary; returns the figures it printed.

    ``on_step(step, images, labels)`` is called after each training step; when it returns
    True training stops there as an interruption would (no end-of-epoch checkpoint, no
    serving), and the next run resumes from the last mid-epoch checkpoint.
    """
    from rich.console import Console

    import weft.data as wd
    import weft.train as wt
    from weft import runtime
    from weft._checks import check_one_of
    from weft.demo._report import print_data, print_serve, print_train

    check_one_of("size", size, sorted(SIZES))
    plan = SIZES[size]
    total_epochs = epochs or plan.epochs
    console = console or Console()
    root = Path(workdir)
    if fresh:
        shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    gil = runtime.gil_enabled()
    console.rule("[bold]weft demo: load, train, serve")
    console.print(f"interpreter: Python {'.'.join(map(str, sys.version_info[:3]))}, "
                  f"free-threaded build: {runtime.is_free_threaded_build()}, GIL on: {gil}, "
                  f"usable cores: {runtime.usable_cores()}; work directory {root}")
    summary: dict[str, Any] = {"gil": gil}

    # phase 1 -- data
    started = time.perf_counter()
    counts = make_dataset(root / "data", train_per_class=plan.train_per_class, val_per_class=plan.val_per_class)
    summary["dataset_seconds"] = time.perf_counter() - started
    train_pipe = (wd.from_image_folder(root / "data" / "train").shuffle(buffer=_SHUFFLE_BUFFER, seed=0)
                  .map(load_example, workers=_DECODE_WORKERS, name="decode+augment").batch(plan.batch_size)
                  .prefetch(_PREFETCH))
    val_pipe = (wd.from_image_folder(root / "data" / "val").map(load_plain, workers=_DECODE_WORKERS, name="decode")
                .batch(_VALIDATION_BATCH))

    # phase 2 -- train (resuming from the last checkpoint if there is one)
    ckpt = wt.Checkpoints(root / "checkpoints", keep_last=2, keep_best=1, metric="val_acc", mode="max",
                          background=True)
    tracker = wt.Tracker(root / "weft.db")
    latest = ckpt.latest()
    mid_epoch_state = None
    if latest is not None:
        restored = ckpt.restore()
        params = dict(restored.state)
        velocity = {k[2:]: v for k, v in params.items() if k.startswith("v.")}
        params = {k: v for k, v in params.items() if not k.startswith("v.")}
        # a mid-epoch checkpoint holds the pipeline's position: that epoch continues at the
        # batch after the checkpoint; an end-of-epoch one (or one without "epoch_done",
        # written before mid-epoch checkpoints) resumes at the next epoch
        if restored.config.get("epoch_done", True):
            start_epoch = int(restored.config["epoch"]) + 1
        else:
            start_epoch = int(restored.config["epoch"])
            mid_epoch_state = restored.data
        restored.restore_rng()
        step = restored.step
        run = tracker.resume_run(str(restored.config["run_id"]))
        where = "mid-epoch, " if mid_epoch_state is not None else ""
        console.print(f"[yellow]resuming[/] from checkpoint step {restored.step} ({where}epoch {start_epoch + 1} "
                      f"of {total_epochs}), tracker run {run.id}")
    else:
        params = init_params(plan.hidden)
        velocity = {k: np.zeros_like(v) for k, v in params.items()}
        start_epoch = 0
        step = 0
        run = tracker.start_run("demo", params={"size": size, "hidden": plan.hidden, "lr": learning_rate(0),
                                                "batch_size": plan.batch_size})
    summary.update(resumed_from_epoch=start_epoch if latest is not None else None,
                   resumed_from_step=step if latest is not None else None, run_id=run.id)
    step_timer = wt.timed("weft.demo.train_step")
    step_timer.reset()
    images = 0
    val_acc = loss = float("nan")
    stopped = False
    train_started = time.perf_counter()
    for epoch in range(start_epoch, total_epochs):
        train_pipe.set_epoch(epoch)
        if mid_epoch_state is not None and epoch == start_epoch:
            train_pipe.load_state_dict(mid_epoch_state)
        lr = learning_rate(epoch)
        for x, y in train_pipe:
            with step_timer:
                loss, acc = sgd_step(params, velocity, x, y, lr)
            run.log({"loss": loss, "train_acc": acc}, step=step)
            step += 1
            images += len(y)
            if step % plan.checkpoint_every == 0:
                # the pipeline's position after this batch: a resume continues at the next one
                ckpt.save(step, _train_state(params, velocity), data=train_pipe.state_dict(), rng=True,
                          metrics={"loss": loss},
                          config={"epoch": epoch, "epoch_done": False, "run_id": run.id, "size": size})
            if on_step is not None and on_step(step - 1, x, y):
                stopped = True
                break
        if stopped:
            break
        val_acc = evaluate(params, val_pipe)
        run.log({"val_acc": val_acc, "epoch": epoch}, step=step)
        ckpt.save(step, _train_state(params, velocity), rng=True, metrics={"val_acc": val_acc, "loss": loss},
                  config={"epoch": epoch, "epoch_done": True, "run_id": run.id, "size": size})
        console.print(f"  epoch {epoch + 1}/{total_epochs}: loss {loss:.3f}, val accuracy {val_acc:.1%}")
    ckpt.wait()
    train_seconds = time.perf_counter() - train_started
    if stopped:
        ckpt.close()
        tracker.close()
        summary.update(train_images=images, train_seconds=train_seconds, stopped_at_step=step)
        console.print(f"[yellow]stopped[/] after step {step}; run the demo again to resume from its last "
                      "checkpoint")
        return summary
    if start_epoch >= total_epochs:
        console.print(f"[yellow]already trained[/] {total_epochs} epochs (pass --epochs N to train more, "
                      "--fresh to start over)")
        val_acc = evaluate(params, val_pipe)
    run.finish("finished")
    data_stats = train_pipe.statistics() if images else None
    summary.update(train_images=images, train_seconds=train_seconds, val_acc=val_acc,
                   step_stats=step_timer.statistics(), ckpt_stats=ckpt.statistics())
    ckpt.close()
    tracker.close()
    print_data(console, counts, summary, data_stats)
    print_train(console, summary, root)

    # phase 3 -- serve
    served = serve_and_query(root, val_pipe, plan.requests)
    summary.update(served)
    print_serve(console, served)
    console.rule(f"[bold]final accuracy: {val_acc:.1%} (validation), {served['served_acc']:.1%} "
                 f"(served predictions)")
    return summary


def _train_state(params: dict[str, np.ndarray], velocity: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What a checkpoint keeps of the model: the weights and (as ``v.<name>``) their momentum."""
    return {**params, **{f"v.{k}": v for k, v in velocity.items()}}


def evaluate(params: dict[str, np.ndarray], val_pipe: Any) -> float:
    """Accuracy of ``params`` over the validation pipeline."""
    correct = total = 0
    for x, y in val_pipe:
        _, p = forward(params, x)
        correct += int((p.argmax(axis=1) == y).sum())
        total += len(y)
    return correct / max(total, 1)


def serve_and_query(root: Path, val_pipe: Any, requests: int) -> dict[str, Any]:
    """Serve the best checkpoint's model; send ``requests`` single-image V2 requests from
    _CLIENT_THREADS threads."""
    import weft.exec
    from weft.serve import Client, Server, ServerConfig

    xs, ys = [], []
    for x, y in val_pipe:
        xs.append(x)
        ys.append(y)
    images, labels = np.concatenate(xs), np.concatenate(ys)
    picks = np.arange(requests) % len(images)
    server = Server([DemoModel(str(root / "checkpoints"))],
                    ServerConfig(port=0, max_batch_size=_SERVE_MAX_BATCH, max_delay=_SERVE_MAX_DELAY,
                                 workers=_SERVE_WORKERS))
    url = server.start()
    local = threading.local()

    def ask(i: int) -> int:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = Client(url)
            clients.append(client)
        probs = client.infer("shapes", {"image": images[i:i + 1]})["probs"]
        return int(probs.argmax(axis=1)[0])

    clients: list[Any] = []
    try:
        started = time.perf_counter()
        with weft.exec.create("thread", workers=_CLIENT_THREADS) as pool:
            predictions = list(pool.map(ask, picks.tolist(), max_in_flight=_IN_FLIGHT))
        seconds = time.perf_counter() - started
        stats = server.statistics()
    finally:
        for client in clients:
            client.close()
        server.stop()
    batcher = stats.models["shapes"]
    return {"url": url, "requests": requests, "serve_seconds": seconds, "requests_per_s": requests / seconds,
            "served_acc": float((np.array(predictions) == labels[picks]).mean()),
            "serve_backend": stats.backend, "serve_reason": stats.backend_reason,
            "batches": batcher.batches, "mean_batch_rows": batcher.mean_batch_rows,
            "failed": batcher.failed, "client_threads": _CLIENT_THREADS}
